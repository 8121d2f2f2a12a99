//! In-process search on the index at 100k, 1M and 5M synthetic slots.
//!
//! Deterministic data: places clustered around the region's communes by population, slots
//! spread over the next 72 h, each place with its own 1–3 practitioners and the modalities
//! they offer ([`DataModel::Practices`]; `SASNP_BENCH_DATA=uniform` gives the first model,
//! where every place offers every profession and modality). Patient points: interior points of
//! communes drawn by population. Criterion measures the mean per query; the per-query latency
//! distribution (p50/p99/max over the queries, 10 000 by default) is printed as a table — the figures in
//! BENCHMARKS.md come from this run.
//!
//! `cargo bench --bench search` (`SASNP_BENCH_SIZES=100000,1000000` to choose sizes,
//! `SASNP_BENCH_QUERIES=50000` for more queries than the default 10 000).

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

pub const NOW: i64 = 1_795_424_400; // 2026-11-23 09:00 UTC

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

/// How the synthetic places' providers are drawn (`SASNP_BENCH_DATA`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataModel {
    /// Each place has 1–3 practitioners as in `ingest::generate` (80 % médecins généralistes
    /// 10/SM54, 10 % infirmiers 60, 10 % sages-femmes 50), each with the modalities their
    /// practice offers: every médecin consults at the practice (AMB), 25 % also by
    /// teleconsultation (VR), 15 % also at home (HH); infirmiers mostly at home (HH 80 %, AMB
    /// 20 %); sages-femmes at the practice, 30 % also by teleconsultation. So places differ in
    /// what they offer, as real cabinets do (the default).
    Practices,
    /// The first benchmark's model: every slot draws its practitioner among 200 shared ones
    /// (4/5 médecins, 1/5 infirmiers) and its modality at random (AMB 3/5, HH 1/5, VR 1/5), so
    /// every place offers every profession and modality.
    Uniform,
}

impl DataModel {
    fn from_env() -> Self {
        match std::env::var("SASNP_BENCH_DATA").as_deref() {
            Ok("uniform") => DataModel::Uniform,
            Ok("practices") | Err(_) => DataModel::Practices,
            Ok(other) => panic!("SASNP_BENCH_DATA={other}: expected practices or uniform"),
        }
    }
}

/// A practitioner of a synthetic place and the modalities it offers (drawn uniformly per slot
/// among `modalities`, repeated entries weighting them).
struct Practice {
    provider: Arc<Provider>,
    modalities: Vec<Modality>,
}

/// 1–3 practitioners of one place (see [`DataModel::Practices`]).
fn practices(rng: &mut StdRng, next_id: &mut u64) -> Vec<Practice> {
    use Modality::{Ambulatory as Amb, HomeVisit as Hh, Teleconsultation as Vr};
    (0..rng.random_range(1..=3))
        .map(|_| {
            *next_id += 1;
            let (profession, specialty, modalities) = match rng.random_range(0..10) {
                0 => ("60", None, vec![Hh, Hh, Hh, Hh, Amb]),
                1 => {
                    let mut m = vec![Amb, Amb, Amb];
                    if rng.random_bool(0.3) {
                        m.push(Vr);
                    }
                    ("50", None, m)
                }
                _ => {
                    let mut m = vec![Amb, Amb, Amb, Amb, Amb, Amb];
                    if rng.random_bool(0.25) {
                        m.push(Vr);
                    }
                    if rng.random_bool(0.15) {
                        m.push(Hh);
                    }
                    ("10", Some("SM54"), m)
                }
            };
            Practice {
                provider: Arc::new(Provider {
                    practitioner_id: Some(format!("8100{next_id:08}")),
                    practitioner_name: Some(format!("Dr Bench {next_id}")),
                    profession: Some(profession.into()),
                    specialty: specialty.map(String::from),
                    ..Default::default()
                }),
                modalities,
            }
        })
        .collect()
}

/// An index of `n_slots` slots over `n_slots / 50` places, as the first benchmark drew it
/// ([`DataModel::Uniform`]: `benches/snapshot.rs` keeps its data).
#[allow(dead_code)] // used by benches/snapshot.rs
pub fn synthetic_index(geo: &Geography, n_slots: usize, seed: u64) -> SlotIndex {
    synthetic_index_of(geo, n_slots, seed, DataModel::Uniform)
}

/// An index of `n_slots` slots over `n_slots / 50` places drawn by `model`.
pub fn synthetic_index_of(
    geo: &Geography,
    n_slots: usize,
    seed: u64,
    model: DataModel,
) -> SlotIndex {
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
    let shared: Vec<Practice> = (0..200)
        .map(|i| Practice {
            provider: Arc::new(Provider {
                practitioner_id: Some(format!("8100{i:08}")),
                practitioner_name: Some(format!("Dr Bench {i}")),
                profession: Some(if i % 5 == 4 { "60" } else { "10" }.into()),
                specialty: (i % 5 != 4).then(|| "SM54".into()),
                ..Default::default()
            }),
            modalities: modalities.to_vec(),
        })
        .collect();
    let mut next_provider = 1_000u64;
    let mut places = Vec::with_capacity(n_places);
    let mut id = 0i64;
    for p in 0..n_places {
        let town = towns.pick(&mut rng);
        let position = LatLon::new(
            town.interior.lat + rng.random_range(-0.03..0.03),
            town.interior.lon + rng.random_range(-0.04..0.04),
        )
        .unwrap();
        let own = match model {
            DataModel::Practices => practices(&mut rng, &mut next_provider),
            DataModel::Uniform => Vec::new(),
        };
        let offer: &[Practice] = if own.is_empty() { &shared } else { &own };
        let per = n_slots / n_places + usize::from(p < n_slots % n_places);
        let mut slots: Vec<SlotEntry> = (0..per)
            .map(|_| {
                id += 1;
                let start = NOW + rng.random_range(0..72 * 3600) / 600 * 600;
                // (the uniform model keeps the first benchmark's draw order, hence its data)
                let (modality, surnumeraire, offered, provider) = match model {
                    DataModel::Uniform => {
                        let m = modalities[rng.random_range(0..modalities.len())];
                        let (s, o) = (rng.random_bool(0.1), rng.random_bool(0.9));
                        (m, s, o, &offer[rng.random_range(0..offer.len())])
                    }
                    DataModel::Practices => {
                        let pr = &offer[rng.random_range(0..offer.len())];
                        let m = pr.modalities[rng.random_range(0..pr.modalities.len())];
                        (m, rng.random_bool(0.1), rng.random_bool(0.9), pr)
                    }
                };
                SlotEntry {
                    id,
                    start,
                    end: start + 1200,
                    modality,
                    audience: AudienceSet(4),
                    surnumeraire,
                    offered,
                    capacity: 1,
                    provider: provider.provider.clone(),
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

/// Prints the `n` slowest queries (best of 3 runs each) with what they asked for
/// (`SASNP_BENCH_SLOWEST=n`), to see what the tail is made of.
fn slowest(index: &SlotIndex, qs: &[Query], n: usize) {
    let snap = index.load();
    let mut timed: Vec<(Duration, usize)> = qs
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let best = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    std::hint::black_box(search(&snap, index, q));
                    t.elapsed()
                })
                .min()
                .unwrap();
            (best, i)
        })
        .collect();
    timed.sort();
    let p99 = timed[timed.len() * 99 / 100].0;
    println!(
        "best-of-3 p50 {:.2?} p99 {p99:.2?}",
        timed[timed.len() / 2].0
    );
    // the same per kind of query (a soonest query for a profession's home visits is the
    // sparse case: few matching slots at each instant)
    for (label, keep) in [
        (
            "distance",
            (|q: &Query| q.order == Order::Distance) as fn(&Query) -> bool,
        ),
        ("soonest", |q: &Query| q.order == Order::Soonest),
        ("soonest, profession + home visits", |q: &Query| {
            q.order == Order::Soonest && q.profession.is_some() && !q.modalities.is_empty()
        }),
        ("soonest, other", |q: &Query| {
            q.order == Order::Soonest && (q.profession.is_none() || q.modalities.is_empty())
        }),
    ] {
        let kept: Vec<Duration> = timed
            .iter()
            .filter(|(_, i)| keep(&qs[*i]))
            .map(|(t, _)| *t)
            .collect();
        let p = |x: f64| kept[((kept.len() as f64 * x) as usize).min(kept.len() - 1)];
        println!(
            "best-of-3 {label} ({}): p50 {:.2?} p99 {:.2?} max {:.2?}",
            kept.len(),
            p(0.5),
            p(0.99),
            kept[kept.len() - 1]
        );
    }
    for &(t, i) in timed.iter().rev().take(n) {
        let q = &qs[i];
        let found = search(&snap, index, q);
        println!(
            "{t:>9.2?} #{i:<5} {:?} {}-{}h prof {:?} spec {:?} mod {:?} base {} km steps {} radius {} km hits {}",
            q.order,
            (q.from - NOW) / 3600,
            (q.to - NOW) / 3600,
            q.profession,
            q.specialty,
            q.modalities,
            q.radius.base_m / 1000.0,
            found.steps,
            found.radius_m / 1000.0,
            found.hits.len()
        );
    }
}

fn main() {
    let geo = Geography::load(&Geography::default_dir()).expect("geodata");
    let sizes: Vec<usize> = std::env::var("SASNP_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000, 5_000_000]);
    let model = DataModel::from_env();
    println!("data model: {model:?}");
    // More queries make the single cold pass's p99 steadier (10 000 give it 100 samples).
    let n_queries = std::env::var("SASNP_BENCH_QUERIES")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(10_000);
    let qs = queries(&geo, n_queries, 42);
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let mut table = Vec::new();
    for &n in &sizes {
        let t = Instant::now();
        let index = synthetic_index_of(&geo, n, 7, model);
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
        if let Some(n_slow) = std::env::var("SASNP_BENCH_SLOWEST")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            slowest(&index, &qs, n_slow);
        }
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
