//! Parse + normalise throughput per feed format on a deterministic 100k-slot feed
//! (`sasnp::ingest::generate`), resolver = the built-in sample towns.
//!
//! Run: `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 5`.
//! Figures are slots/s. `ingest()` reads SMART SL slot lines on every core; the entries
//! marked "1 thread" run everything on one core (the per-core figure); the other formats
//! are single-threaded.

use chrono::{DateTime, Utc};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sasnp::ingest::generate::{GenSpec, generate, to_csv, to_fhir_bundle, to_ndjson};
use sasnp::ingest::sample::SampleResolver;
use sasnp::ingest::smart::ingest_ndjson_with_threads;
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
    let ndjson_cell = std::cell::OnceCell::new();
    let ndjson = || ndjson_cell.get_or_init(|| String::from_utf8(to_ndjson(&feed)).expect("UTF-8"));
    group.bench_function("smart-sl ndjson, 1 thread", |b| {
        let bytes = ndjson().as_bytes();
        b.iter_batched(
            || (),
            |()| {
                black_box(ingest_ndjson_with_threads(black_box(bytes), &ctx, 1).expect("readable"))
            },
            BatchSize::PerIteration,
        )
    });
    // A SMART SL publisher that writes only what the SMART specification defines (booking
    // link, phone): the generated lines without the SAS codings (serviceType, meta.security,
    // specialty, appointmentType).
    let minimal_cell = std::cell::OnceCell::new();
    let minimal = || {
        minimal_cell.get_or_init(|| {
            let mut out = String::with_capacity(ndjson().len());
            for line in ndjson().lines() {
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
        })
    };
    group.bench_function("smart-sl ndjson, SMART-only lines", |b| {
        let bytes = minimal();
        b.iter_batched(
            || (),
            |()| black_box(ingest(FeedFormat::SmartSl, black_box(bytes), &ctx).expect("readable")),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("smart-sl ndjson, SMART-only lines, 1 thread", |b| {
        let bytes = minimal();
        b.iter_batched(
            || (),
            |()| {
                black_box(ingest_ndjson_with_threads(black_box(bytes), &ctx, 1).expect("readable"))
            },
            BatchSize::PerIteration,
        )
    });
    // Reference floors: a JSON reader scanning the same NDJSON without building anything.
    group.bench_function("floor: ndjson json scan only", |b| {
        let text = ndjson();
        b.iter(|| {
            for line in text.lines() {
                black_box(serde_json::from_str::<serde::de::IgnoredAny>(line).expect("JSON"));
            }
        })
    });
    // The slot lines alone read into the summaries normalisation uses.
    let slot_lines = || {
        ndjson()
            .lines()
            .filter(|l| l.starts_with(r#"{"resourceType":"Slot""#))
    };
    group.bench_function("slot lines to SlotSummary only", |b| {
        b.iter(|| {
            for line in slot_lines() {
                let slot: sasnp::ingest::fhir_dto::SlotResource<'_> =
                    serde_json::from_str(line).expect("a Slot");
                black_box(sasnp::ingest::fhir_dto::SlotSummary::from(slot));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
