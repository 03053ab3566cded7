//! The configs shipped in config/ stay valid as the code changes.

use tapfwd::Config;

#[test]
fn shipped_configs_are_valid() {
    let mut checked = 0;
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        if let Err(e) = Config::from_toml_with_env(&text, std::iter::empty()) {
            panic!("{}: {e}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 2, "expected the example and demo configs");
}
