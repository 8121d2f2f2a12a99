//! In-process search on the index at 100k, 1M and 5M synthetic slots.
//!
//! Deterministic data: places clustered around the region's communes by population, slots
//! spread over the next 72 h. Patient points: interior points of communes drawn by population.
//! Criterion measures the mean per query; the per-query latency distribution (p50/p99/max over
//! 20 000 queries) is printed as a table — the figures in BENCHMARKS.md come from this run.
//!
//! `cargo bench --bench search` (`SASNP_BENCH_SIZES=100000,1000000` to choose sizes).

use criterion::{BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sasnp::domain::LatLon;
use sasnp::domain::slot::{AudienceSet, LocationPrecision, Modality};
use sasnp::geo::Geography;
use sasnp::index::search::{Order, Query, Surnumeraire, search};
use sasnp::index::{PlaceEntry, Provider, SlotEntry, SlotIndex, Snapshot, SourceMeta};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::{Duration, Instant};

const NOW: i64 = 1_795_424_400; // 2026-11-23 09:00 UTC

/// Weighted sampler over communes by population.
struct Towns<'g> {
    communes: Vec<&'g sasnp::geo::Commune>,
    cumulative: Vec<u64>,
}

impl<'g> Towns<'g> {
    fn new(geo: &'g Geography) -> Self {
        let communes: Vec<_> = geo.communes().iter().collect();
        let mut acc = 0;
        let cumulative = communes.iter().map(|c| {
            acc += u64::from(c.population.max(1));
            acc
        });
        let cumulative = cumulative.collect();
        Towns {
            communes,
            cumulative,
        }
    }
    fn pick(&self, rng: &mut StdRng) -> &'g sasnp::geo::Commune {
        let total = *self.cumulative.last().unwrap();
        let x = rng.random_range(0..total);
        self.communes[self.cumulative.partition_point(|c| *c <= x)]
    }
}

/// An index of `n_slots` slots over `n_slots / 50` places.
pub fn synthetic_index(geo: &Geography, n_slots: usize, seed: u64) -> SlotIndex {
    let mut rng = StdRng::seed_from_u64(seed);
    let towns = Towns::new(geo);
    let source = Arc::new(SourceMeta {
        id: 1,
        cpts_id: "bench".into(),
        name: "bench".into(),
        last_success_at: AtomicI64::new(NOW),
        stale_after_s: 365 * 86_400,
    });
    let n_places = (n_slots / 50).max(1);
    let modalities = [
        Modality::Ambulatory,
        Modality::Ambulatory,
        Modality::Ambulatory,
        Modality::HomeVisit,
        Modality::Teleconsultation,
    ];
    let providers: Vec<Arc<Provider>> = (0..200)
        .map(|i| {
            Arc::new(Provider {
                practitioner_id: Some(format!("8100{i:08}")),
                practitioner_name: Some(format!("Dr Bench {i}")),
                profession: Some(if i % 5 == 4 { "60" } else { "10" }.into()),
                specialty: (i % 5 != 4).then(|| "SM54".into()),
                ..Default::default()
            })
        })
        .collect();
    let mut places = Vec::with_capacity(n_places);
    let mut id = 0i64;
    for p in 0..n_places {
        let town = towns.pick(&mut rng);
        let position = LatLon::new(
            town.interior.lat + rng.random_range(-0.03..0.03),
            town.interior.lon + rng.random_range(-0.04..0.04),
        )
        .unwrap();
        let per = n_slots / n_places + usize::from(p < n_slots % n_places);
        let mut slots: Vec<SlotEntry> = (0..per)
            .map(|_| {
                id += 1;
                let start = NOW + rng.random_range(0..72 * 3600) / 600 * 600;
                SlotEntry {
                    id,
                    start,
                    end: start + 1200,
                    modality: modalities[rng.random_range(0..modalities.len())],
                    audience: AudienceSet(4),
                    surnumeraire: rng.random_bool(0.1),
                    offered: rng.random_bool(0.9),
                    capacity: 1,
                    provider: providers[rng.random_range(0..providers.len())].clone(),
                    external_id: format!("s{id}").into_boxed_str(),
                    booking_url: None,
                    appointment_type: Some("ROUTINE"),
                }
            })
            .collect();
        slots.sort_by_key(|s| (s.start, s.id));
        places.push(Arc::new(PlaceEntry {
            id: p as i64,
            source: source.clone(),
            position,
            precision: LocationPrecision::Exact,
            name: Some(format!("Cabinet {p}")),
            address: None,
            postcode: None,
            city: Some(town.name.clone()),
            insee: Some(town.insee.to_string()),
            slots,
            json: Default::default(),
        }));
    }
    let index = SlotIndex::default();
    index.replace_all(Snapshot::new(places, HashMap::from([(1, source)])));
    // 2 % of slots held or booked by operators
    for _ in 0..n_slots / 50 {
        index.mark_taken(rng.random_range(1..=id), i64::MAX);
    }
    index
}

/// A realistic mix of operator queries.
pub fn queries(geo: &Geography, n: usize, seed: u64) -> Vec<Query> {
    let mut rng = StdRng::seed_from_u64(seed);
    let towns = Towns::new(geo);
    (0..n)
        .map(|i| {
            let c = towns.pick(&mut rng);
            let radius = sasnp::http::search::department_radius(&c.department);
            let (from, to) = match i % 4 {
                0 => (NOW, NOW + 4 * 3600),
                1 => (NOW, NOW + 72 * 3600),
                2 => (NOW + 24 * 3600, NOW + 48 * 3600),
                _ => (NOW, NOW + 12 * 3600),
            };
            Query {
                origin: c.interior,
                radius,
                from,
                to,
                now: NOW,
                profession: (i % 3 == 0).then(|| "10".into()),
                specialty: (i % 5 == 1).then(|| "SM54".into()),
                modalities: if i % 7 == 3 {
                    vec![Modality::HomeVisit]
                } else {
                    vec![]
                },
                surnumeraire: Surnumeraire::Include,
                limit: 10,
                order: if i % 10 == 9 {
                    Order::Soonest
                } else {
                    Order::Distance
                },
                seed: i as u64,
            }
        })
        .collect()
}

/// p50, p99, max and mean results per query, over `qs` filtered by `keep`.
fn percentiles(
    index: &SlotIndex,
    qs: &[Query],
    keep: impl Fn(&Query) -> bool,
) -> (Duration, Duration, Duration, f64) {
    let snap = index.load();
    let mut times: Vec<Duration> = Vec::with_capacity(qs.len());
    let mut hits = 0usize;
    for q in qs.iter().filter(|q| keep(q)) {
        let t = Instant::now();
        let found = search(&snap, index, q);
        times.push(t.elapsed());
        hits += found.hits.len();
    }
    times.sort();
    let p = |x: f64| times[((times.len() as f64 * x) as usize).min(times.len() - 1)];
    (
        p(0.50),
        p(0.99),
        *times.last().unwrap(),
        hits as f64 / times.len() as f64,
    )
}

fn main() {
    let geo = Geography::load(&Geography::default_dir()).expect("geodata");
    let sizes: Vec<usize> = std::env::var("SASNP_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 5_000_000]);
    let qs = queries(&geo, 10_000, 42);
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut table = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let index = synthetic_index(&geo, n, 7);
        let build = t.elapsed();
        let snap = index.load();
        let mut group = c.benchmark_group("search");
        group.throughput(Throughput::Elements(1));
        let mut i = 0;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) % qs.len();
                search(&snap, &index, &qs[i])
            })
        });
        group.finish();
        for (label, keep) in [
            ("all", (|_: &Query| true) as fn(&Query) -> bool),
            ("distance", |q: &Query| q.order == Order::Distance),
            ("soonest", |q: &Query| q.order == Order::Soonest),
        ] {
            let (p50, p99, max, avg_hits) = percentiles(&index, &qs, keep);
            table.push((n, label, snap.places.len(), build, p50, p99, max, avg_hits));
        }
    }
    println!("\n| slots | queries | places | index build | p50 | p99 | max | results/query |");
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for (n, label, places, build, p50, p99, max, hits) in table {
        println!(
            "| {n} | {label} | {places} | {build:.2?} | {p50:.2?} | {p99:.2?} | {max:.2?} | {hits:.1} |"
        );
    }
    c.final_summary();
}
