//! CPU cost of intake without I/O: parse the example Invite, check it against the schemas and
//! run it through the rules, rendering an e-mail (subject, text, HTML) and an SMS. Uses the
//! repository's configuration with the file outbox.
//!
//! cargo bench --bench intake

use std::collections::HashMap;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use herald::config::{LoadOptions, load};
use herald::ingest;

fn intake(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let env: HashMap<String, String> = HashMap::new();
    let generation = load(&LoadOptions {
        config_dir: root,
        data_dir: &root.join("target/bench-data"),
        env: &env,
        generation: 1,
    })
    .expect("the repository's configuration loads");
    let body = std::fs::read(root.join("examples/invite.json")).unwrap();
    let now: jiff::Timestamp = "2019-06-14T06:00:00Z".parse().unwrap();

    c.bench_function("parse_body", |b| {
        b.iter(|| ingest::parse_body(Some("application/json"), &body).unwrap())
    });
    let payload = ingest::parse_body(None, &body).unwrap();
    c.bench_function("schema_validate", |b| {
        b.iter(|| generation.schemas.validate(&payload).unwrap())
    });
    c.bench_function("decide_invite_email_and_sms", |b| {
        b.iter(|| ingest::decide(&generation, payload.clone(), now).unwrap())
    });
}

criterion_group!(benches, intake);
criterion_main!(benches);
