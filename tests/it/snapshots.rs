//! insta snapshots of `inspect --json` for a few fixtures: a change in what
//! tfbn reports must show up in review.

use tfbn::inspect::inspect;
use tfbn::source::Source;

use crate::common::fixture;

fn snapshot(name: &str) {
    let fx = fixture(name);
    // Open through the relative path (cargo runs tests from the package
    // root) so the snapshot does not depend on the checkout location.
    let source = Source::open(fx.rel_open_path()).unwrap();
    let report = inspect(&source).unwrap();
    insta::assert_json_snapshot!(format!("inspect_{name}"), report);
}

#[test]
fn inspect_tf1_trained() {
    snapshot("tf1_trained");
}

#[test]
fn inspect_tfkeras_savedmodel() {
    snapshot("tfkeras_savedmodel");
}

#[test]
fn inspect_keras3_functional() {
    snapshot("keras3_functional");
}

#[test]
fn inspect_slim_ema() {
    snapshot("slim_ema");
}
