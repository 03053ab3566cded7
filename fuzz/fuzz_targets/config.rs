//! Config loading must never panic: any text is either a config or a list of errors naming keys.
//!
//! The input, if UTF-8, goes through what `tapfwd check` does with a file's text: parse (TOML,
//! no environment overrides), add `tenants_dir` (relative to the working directory; run the
//! fuzzer from an empty one), validate, and read every tenant's secret (with an empty
//! environment; `secret_file` paths are read as `check` would).

#![no_main]

use libfuzzer_sys::fuzz_target;
use tapfwd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::from_toml_with_env(text, std::iter::empty()) {
        let _ = config.resolve_secrets(&|_| None);
        // What `check` prints and `run` derives from a valid config must not panic either.
        for tenant in config.tenants.values() {
            let _ = tenant.all_sinks();
            let _ = tenant.base_url();
        }
    }
});
