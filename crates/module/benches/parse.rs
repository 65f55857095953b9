//! Parse + verify throughput over the real fixture corpus (bytes per second).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use modflash_module::chain;

fn corpus() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/real");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect()
}

fn parse_and_verify(c: &mut Criterion) {
    let files = corpus();
    let total: usize = files.iter().map(Vec::len).sum();
    let mut group = c.benchmark_group("inspect");
    group.throughput(Throughput::Bytes(total as u64));
    group.bench_function("parse+verify corpus", |b| {
        b.iter(|| {
            let mut valid = 0usize;
            for f in &files {
                for m in chain(std::hint::black_box(f)).flatten() {
                    valid += usize::from(m.is_valid());
                }
            }
            valid
        })
    });
    group.finish();
}

criterion_group!(benches, parse_and_verify);
criterion_main!(benches);
