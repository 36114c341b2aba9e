//! Every spec in `fixtures/invalid/` is one AWS would reject (or one
//! streamlab cannot emulate); the exact messages are pinned in snapshots,
//! one per file. Review changes with `cargo insta review`.

use std::path::PathBuf;

use rstest::rstest;

#[rstest]
fn invalid_spec_is_rejected_with_exact_messages(#[files("fixtures/invalid/*.json")] path: PathBuf) {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let error = streamlab::spec::load(&path).expect_err("fixtures/invalid holds only invalid specs");
    let messages: Vec<String> = error.violations().iter().map(ToString::to_string).collect();
    assert!(!messages.is_empty(), "{error}");
    insta::assert_yaml_snapshot!(format!("invalid_{name}"), messages);
}
