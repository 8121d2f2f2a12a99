//! Parse + normalise throughput per feed format on a deterministic 100k-slot feed
//! (`sasnp::ingest::generate`), resolver = the built-in sample towns.
//!
//! Run: `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 5`.
//! Figures are slots/s for one core (ingestion is single-threaded).

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sasnp::ingest::generate::{GenSpec, generate, to_csv, to_fhir_bundle, to_ndjson};
use sasnp::ingest::sample::SampleResolver;
use sasnp::ingest::{FeedFormat, IngestContext, ingest};
use std::hint::black_box;

const SLOTS: usize = 100_000;

fn bench(c: &mut Criterion) {
    let start: DateTime<Utc> = "2026-05-04T06:00:00Z".parse().unwrap();
    let feed = generate(&GenSpec::new(7, SLOTS, 2_000, start));
    let resolver = SampleResolver::default();
    let ctx = IngestContext::new(start, &resolver);
    type Writer = fn(&sasnp::domain::slot::NormalizedFeed) -> Vec<u8>;
    let inputs: [(&str, FeedFormat, Writer); 4] = [
        ("smart-sl ndjson", FeedFormat::SmartSl, to_ndjson),
        ("sas-fhir bundle", FeedFormat::SasFhir, to_fhir_bundle),
        ("csv ; fr-style", FeedFormat::Csv, |f| to_csv(f, b';')),
        ("csv , utf-8", FeedFormat::Csv, |f| to_csv(f, b',')),
    ];
    let mut group = c.benchmark_group("ingest_100k");
    group.throughput(Throughput::Elements(SLOTS as u64));
    group.sample_size(10);
    for (name, format, write) in inputs {
        let input = std::cell::OnceCell::new();
        group.bench_function(name, |b| {
            // Built on first use so that a filtered run only pays for the format it measures.
            let bytes = input.get_or_init(|| {
                let bytes = write(&feed);
                let out = ingest(format, &bytes, &ctx).expect("generated feeds are readable");
                assert_eq!(out.report.accepted as usize, SLOTS, "{name}");
                eprintln!(
                    "{name}: {} bytes ({} bytes/slot)",
                    bytes.len(),
                    bytes.len() / SLOTS
                );
                bytes
            });
            let format = &format;
            b.iter_batched(
                || (),
                |()| black_box(ingest(*format, black_box(bytes), &ctx).expect("readable")),
                BatchSize::PerIteration,
            )
        });
    }
    // A SMART SL publisher that writes only what the SMART specification defines (booking
    // link, phone): the generated lines without the SAS codings (serviceType, meta.security,
    // specialty, appointmentType).
    let minimal = std::cell::OnceCell::new();
    group.bench_function("smart-sl ndjson, SMART-only lines", |b| {
        let bytes = minimal.get_or_init(|| {
            let full = String::from_utf8(to_ndjson(&feed)).expect("UTF-8");
            let mut out = String::with_capacity(full.len());
            for line in full.lines() {
                if let Some(rest) = line.strip_prefix(r#"{"resourceType":"Slot","#) {
                    let mut v: serde_json::Value =
                        serde_json::from_str(&format!("{{{rest}")).expect("JSON");
                    for k in ["serviceType", "meta", "specialty", "appointmentType"] {
                        v.as_object_mut().expect("object").remove(k);
                    }
                    out.push_str(r#"{"resourceType":"Slot","#);
                    out.push_str(&v.to_string()[1..]);
                } else {
                    out.push_str(line);
                }
                out.push('\n');
            }
            eprintln!("smart-sl SMART-only: {} bytes/slot", out.len() / SLOTS);
            out.into_bytes()
        });
        b.iter_batched(
            || (),
            |()| black_box(ingest(FeedFormat::SmartSl, black_box(bytes), &ctx).expect("readable")),
            BatchSize::PerIteration,
        )
    });
    // Reference floor: serde_json scanning the same NDJSON without building anything.
    let ndjson = std::cell::OnceCell::new();
    group.bench_function("floor: ndjson json scan only", |b| {
        let text = ndjson.get_or_init(|| String::from_utf8(to_ndjson(&feed)).expect("UTF-8"));
        b.iter(|| {
            for line in text.lines() {
                black_box(serde_json::from_str::<serde::de::IgnoredAny>(line).expect("JSON"));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
