//! Config and build checks every HTTP sink shares: the shipped MSP example, errors that name
//! the key (unknown keys refused), secrets from the environment or a file, CA files, and map keys
//! in camelCase surviving the loader.

use serde_json::{json, Value};
use tapfwd::sinks::{self, SinkConfig};

#[test]
fn msp_example_config_loads_and_validates() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/msp-example.toml"
    ))
    .unwrap();
    let config = tapfwd::Config::from_toml_with_env(&text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<_> = config.sinks.values().map(|s| s.kind()).collect();
    for kind in ["splunk_hec", "sentinel", "logscale", "http"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
}

#[test]
fn sink_config_errors_name_the_problem_and_refuse_unknown_keys() {
    let bad = |v: Value| -> String {
        match serde_json::from_value::<SinkConfig>(v) {
            Err(e) => e.to_string(),
            Ok(c) => c.validate().unwrap_err(),
        }
    };
    let e = bad(json!({"type":"splunk_hec","url":"https://s:8088","token":"t","tokn":"x"}));
    assert!(e.contains("tokn"), "{e}");
    let e = bad(json!({"type":"splunk_hec","url":"https://s:8088"}));
    assert!(
        e.contains("exactly one of token, token_env, token_file"),
        "{e}"
    );
    let e = bad(json!({"type":"splunk_hec","url":"https://u:p@s:8088","token":"t"}));
    assert!(e.contains("credentials") && !e.contains("u:p"), "{e}");
    let e = bad(
        json!({"type":"splunk_hec","url":"https://s","token":"t","sourcetypes":{"clicks":"x"}}),
    );
    assert!(e.contains("not an event type"), "{e}");
    let e = bad(
        json!({"type":"sentinel","dce":"https://d","dcr_immutable_id":"dcr-1","stream_name":"Custom-X",
        "directory_tenant_id":"t","client_id":"c","client_secret":"s","max_batch_bytes":2_000_000}),
    );
    assert!(e.contains("1000000"), "{e}");
    let e = bad(
        json!({"type":"http","url":"https://h","auth":{"strategy":"bearer","token":"a","token_env":"B"}}),
    );
    assert!(e.contains("found 2"), "{e}");
    let e = bad(json!({"type":"http","url":"https://h","headers":{"Authorization":"x"}}));
    assert!(e.contains("set by the sink"), "{e}");
    let e = bad(json!({"type":"logscale","url":"https://h","token":"t","api":"raw"}));
    assert!(e.contains("raw"), "{e}");
}

#[test]
fn secrets_come_from_env_or_file_and_errors_name_the_key() {
    use tapfwd::sinks::splunk_hec::{SplunkHecConfig, SplunkHecSink};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    crate::support::write_secret(&file, "from-file\n");
    let c: SplunkHecConfig =
        serde_json::from_value(json!({"url":"https://s:8088","token_file":file})).unwrap();
    SplunkHecSink::new("splunk", &c, &|_| None).unwrap();
    let c: SplunkHecConfig =
        serde_json::from_value(json!({"url":"https://s:8088","token_env":"ACME_HEC"})).unwrap();
    SplunkHecSink::new("splunk", &c, &|k| (k == "ACME_HEC").then(|| "v".into())).unwrap();
    let e = SplunkHecSink::new("splunk", &c, &|_| None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("sinks.splunk.token_env") && e.contains("ACME_HEC is not set"),
        "{e}"
    );
}

#[test]
fn unreadable_or_empty_ca_file_fails_at_build() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("ca.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    for path in [junk, dir.path().join("missing.pem")] {
        let config: SinkConfig = serde_json::from_value(
            json!({"type":"logscale","url":"https://h","token":"t","tls_ca_file":path}),
        )
        .unwrap();
        let text = sinks::build("humio", &config, &tapfwd::secret::process_env)
            .err()
            .unwrap()
            .to_string();
        assert!(text.contains("tls_ca_file"), "{text}");
    }
}

#[test]
fn camel_case_map_keys_survive_the_config_loader() {
    let text = r#"
state_dir = "var/state"
[sinks.splunk]
type = "splunk_hec"
url = "https://splunk.example:8088"
token_env = "HEC"
sourcetypes = { clicksPermitted = "pps:click" }
[sinks.sentinel]
type = "sentinel"
dce = "https://dce.example"
dcr_immutable_id = "dcr-1"
stream_name = "Custom-ProofpointTAP"
streams = { messagesDelivered = "Custom-TapMessages" }
directory_tenant_id = "t"
client_id = "c"
client_secret_env = "S"
[sinks.hook]
type = "http"
url = "https://hook.example/in"
headers = { "X-Customer" = "Acme" }
[tenants.acme]
principal = "p"
secret_env = "T"
sinks = ["splunk", "sentinel", "hook"]
"#;
    let config = tapfwd::Config::from_toml_with_env(text, std::iter::empty())
        .unwrap_or_else(|e| panic!("{e}"));
    match &config.sinks["splunk"] {
        SinkConfig::SplunkHec(c) => assert_eq!(c.sourcetypes["clicksPermitted"], "pps:click"),
        other => panic!("{other:?}"),
    }
    match &config.sinks["sentinel"] {
        SinkConfig::Sentinel(c) => {
            assert_eq!(c.streams["messagesDelivered"], "Custom-TapMessages")
        }
        other => panic!("{other:?}"),
    }
}

/// `tapfwd check` on the binary refuses a Sentinel sink with the solution layout fed by a source
/// whose events no solution has a table for (People snapshots, the PoD audit stream): every
/// delivery would be rejected at run time. The error names the tenant's key that routes them
/// there and the kind; the routes the solutions do take pass.
#[test]
fn check_refuses_a_solution_layout_sink_fed_by_kinds_no_solution_has_a_table_for() {
    let dir = tempfile::tempdir().unwrap();
    let check = |tenants: &str| {
        let text = format!(
            "state_dir = \"s\"\n\
             [sinks.sentinel]\ntype = \"sentinel\"\nlayout = \"proofpoint_tap_solution\"\n\
             dce = \"https://tapfwd-dce-a1b2.westeurope-1.ingest.monitor.azure.com\"\n\
             dcr_immutable_id = \"dcr-0123456789abcdef0123456789abcdef\"\n\
             directory_tenant_id = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
             [sinks.archive]\ntype = \"file\"\npath = \"events.ndjson\"\n{tenants}"
        );
        let path = dir.path().join("tapfwd.toml");
        std::fs::write(&path, text).unwrap();
        let out = crate::support::daemon::tapfwd()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let pod = |types: &str| {
        format!(
            "[tenants.acme-pod]\nproduct = \"pod\"\ncluster_id = \"acme_hosted\"\ntoken = \"tok\"\n\
             types = {types}\nsinks = [\"sentinel\"]\n"
        )
    };
    let tap = "[tenants.acme]\nprincipal = \"p\"\nsecret = \"x\"\nsinks = [\"sentinel\"]\n";

    // What the solutions take: TAP SIEM events, PoD message and maillog frames; People routed
    // to another sink.
    let (ok, out) = check(&format!(
        "{}{tap}[tenants.acme.people]\nsinks = [\"archive\"]\n",
        pod("[\"message\", \"maillog\"]")
    ));
    assert!(ok && out.contains("config ok"), "{out}");

    // The PoD audit stream.
    let (ok, out) = check(&pod("[\"message\", \"maillog\", \"audit\"]"));
    assert!(!ok, "{out}");
    assert!(
        out.contains("config key `tenants.acme-pod.sinks`: sink `sentinel` has layout = \"proofpoint_tap_solution\", which has no stream for podAudit events")
            && out.contains("the `audit` log stream (types)"),
        "{out}"
    );
    assert!(
        !out.contains("podMessage") && !out.contains("podMaillog"),
        "{out}"
    );

    // People snapshots, by default to the tenant's sinks, or named in people.sinks.
    let (ok, out) = check(&format!("{tap}[tenants.acme.people]\n"));
    assert!(!ok, "{out}");
    for kind in ["vap", "topClickers"] {
        assert!(
            out.contains(&format!("config key `tenants.acme.people`: sink `sentinel` has layout = \"proofpoint_tap_solution\", which has no stream for {kind} events")),
            "{kind}: {out}"
        );
    }
    assert!(out.contains("people.sinks is not set"), "{out}");
    let (ok, out) = check(&format!(
        "{}[tenants.acme.people]\nfeeds = [\"vap\"]\nsinks = [\"archive\", \"sentinel\"]\n",
        tap.replace("[\"sentinel\"]", "[\"archive\"]")
    ));
    assert!(!ok, "{out}");
    assert!(
        out.contains("config key `tenants.acme.people.sinks`: sink `sentinel` has layout = \"proofpoint_tap_solution\", which has no stream for vap events"),
        "{out}"
    );
    assert!(!out.contains("topClickers"), "{out}");
}

/// Issue 22: a LogScale sink with an ingest token per event type and none of its own can never
/// send a type `tokens` does not list; `check` refuses the route, naming the tenant's key, the
/// type and the way out, and accepts it once the type has a token or the sink has one.
#[test]
fn check_refuses_a_route_to_a_logscale_sink_with_no_token_for_its_type() {
    let dir = tempfile::tempdir().unwrap();
    let check = |sink_tokens: &str, tenants: &str| {
        let text = format!(
            "state_dir = \"s\"\n[sinks.humio]\ntype = \"logscale\"\napi = \"hec_raw\"\n\
             url = \"https://cloud.community.humio.com\"\n{sink_tokens}\n\
             [sinks.archive]\ntype = \"file\"\npath = \"events.ndjson\"\n{tenants}"
        );
        let path = dir.path().join("tapfwd.toml");
        std::fs::write(&path, text).unwrap();
        let out = crate::support::daemon::tapfwd()
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let three =
        "[sinks.humio.tokens]\nmessagesDelivered = \"tok-1\"\nmessagesBlocked = \"tok-2\"\n\
                 clicksPermitted = \"tok-3\"\n";
    let tap = "[tenants.acme]\nprincipal = \"p\"\nsecret = \"x\"\nsinks = [\"humio\"]\n";

    let (ok, out) = check(three, tap);
    assert!(!ok, "{out}");
    assert!(
        out.contains("config key `tenants.acme.sinks`: sink `humio` has an ingest token only for")
            && out.contains("so clicksBlocked events have no token")
            && out.contains("add `tokens.clicksBlocked`"),
        "{out}"
    );
    assert!(!out.contains("tok-"), "a token reached the output: {out}");
    for kind in ["messagesDelivered", "messagesBlocked", "clicksPermitted"] {
        assert!(!out.contains(&format!("so {kind} events")), "{kind}: {out}");
    }

    // Every type the tenant sends has a token: ok; so is a sink token beside `tokens`.
    let (ok, out) = check(
        &format!("{three}clicksBlocked_env = \"HUMIO_BLOCKED\"\n"),
        tap,
    );
    assert!(ok && out.contains("config ok"), "{out}");
    let (ok, out) = check(&format!("token = \"tok-0\"\n{three}"), tap);
    assert!(ok && out.contains("config ok"), "{out}");

    // People snapshots routed to it, with no token for them.
    let (ok, out) = check(
        &format!("{three}clicksBlocked = \"tok-4\"\n"),
        &format!("{tap}[tenants.acme.people]\nfeeds = [\"vap\"]\n"),
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("config key `tenants.acme.people`: sink `humio`")
            && out.contains("so vap events have no token"),
        "{out}"
    );
}
