//! The analyst commands through the real binary: `decode-url` (arguments and standard input, an
//! unrewritten URL unchanged, a malformed one named on stderr with exit 1 while the others still
//! print; what a link decodes to printed as one line of text; a line of input that is not UTF-8
//! or is huge named and skipped, in bounded memory) and `lookup` against the simulator's threat,
//! campaign and forensics endpoints.

mod support;

use std::io::Write as _;
use std::process::Stdio;

use support::daemon::tapfwd;

const V3: &str = "https://urldefense.com/v3/__https://lore.kernel.org/linux-scsi/Ykqg0kr0F*2Fyzk2XW@infradead.org/__;JQ!!ACWV5N9M2RV99hQ!ZxHnW5z2ZUl3Xh4dCQ3s6bwrR3tUwV1f8j7u2NvE2f2kKbmU$";
const V3_DECODED: &str = "https://lore.kernel.org/linux-scsi/Ykqg0kr0F%2Fyzk2XW@infradead.org/";
const V2: &str = "https://urldefense.proofpoint.com/v2/url?u=https-3A__example.com_caf-C3-A9-3Fa-3D1-26amp-3Bb-3D2&d=DwICaQ&c=x&r=y&m=z&s=w&e=";
const V2_DECODED: &str = "https://example.com/café?a=1&b=2";
const V1: &str = "https://urldefense.proofpoint.com/v1/url?u=http://www.bouncycastle.org/&k=oIvRg1%2BdGAgOoM1BIlLLqw%3D%3D%0A&r=x";
const PLAIN: &str = "https://example.com/not/rewritten?x=1";
const BROKEN: &str = "https://urldefense.com/v3/__https://x.test/*__;!!x$";

#[test]
fn decode_url_prints_each_argument_decoded_in_order() {
    let out = tapfwd()
        .args(["decode-url", V3, V2, V1, PLAIN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{V3_DECODED}\n{V2_DECODED}\nhttp://www.bouncycastle.org/\n{PLAIN}\n")
    );
    assert!(out.stderr.is_empty());
}

#[test]
fn decode_url_names_a_malformed_link_exits_1_and_still_prints_the_others() {
    let out = tapfwd()
        .args(["decode-url", V2, BROKEN, PLAIN])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{V2_DECODED}\n{PLAIN}\n")
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!("cannot decode {BROKEN}: ")),
        "{stderr}"
    );
    assert!(stderr.contains("1 URL(s) could not be decoded"), "{stderr}");
}

#[test]
fn decode_url_reads_standard_input_without_arguments() {
    let mut child = tapfwd()
        .arg("decode-url")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("{V3}\n\n  {PLAIN}  \n{BROKEN}\n{V2}");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{V3_DECODED}\n{PLAIN}\n{V2_DECODED}\n")
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(BROKEN));
}

/// Links whose decoded URL holds what a terminal acts on: a line break, ESC, NUL and the C1 CSI
/// (v2), an xterm title sequence ending in BEL (v1), a right-to-left override and a line break
/// (v3); and how each prints.
const CRAFTED: [(&str, &str); 3] = [
    (
        "https://urldefense.proofpoint.com/v2/url?u=https-3A__x.test_a-0Ab-1B-5B31m-00c-C2-9B&d=DwICaQ&c=x&r=y&m=z&s=w&e=",
        "https://x.test/a%0Ab%1B[31m%00c%C2%9B",
    ),
    (
        "https://urldefense.proofpoint.com/v1/url?u=http://x.test/%1B%5D0;pwned%07%00&k=x",
        "http://x.test/%1B]0;pwned%07%00",
    ),
    (
        "https://urldefense.com/v3/__https://x.test/%E2%80%AEgpj.exe%0Aline2__;!!x$",
        "https://x.test/%E2%80%AEgpj.exe%0Aline2",
    ),
];

/// What a link decodes to is printed as one line of text: control characters, separators and
/// bidirectional overrides percent-encoded, from arguments and from standard input alike, and the
/// help says so.
#[test]
fn decode_url_prints_control_characters_of_a_decoded_link_percent_encoded() {
    let expected: String = CRAFTED.iter().map(|(_, out)| format!("{out}\n")).collect();
    let links: Vec<&str> = CRAFTED.iter().map(|(link, _)| *link).collect();
    let out = tapfwd().arg("decode-url").args(&links).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);

    let mut child = tapfwd()
        .arg("decode-url")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(links.join("\n").as_bytes()).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, expected);
    assert_eq!(stdout.lines().count(), CRAFTED.len());
    assert!(
        !stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{stdout:?}"
    );

    let help = tapfwd().args(["decode-url", "--help"]).output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    assert!(help.contains("percent-encoded"), "{help}");
    assert!(help.contains("a line break prints as %0A"), "{help}");
}

/// A line of standard input that is not UTF-8 is named by its number and skipped; the lines after
/// it are still decoded, and the exit code says something was skipped.
#[test]
fn decode_url_names_a_line_that_is_not_utf8_and_decodes_the_rest() {
    let mut child = tapfwd()
        .arg("decode-url")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = format!("{V3}\n").into_bytes();
    input.extend_from_slice(b"https://x.test/\xff\xfe\n");
    input.extend_from_slice(format!("{PLAIN}\n{V2}\n").as_bytes());
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&input).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!("{V3_DECODED}\n{PLAIN}\n{V2_DECODED}\n")
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("line 2: not UTF-8, skipped"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

/// The length of each line `reader` yields and its first 100 bytes, sent on `lines` as they come;
/// a huge line is counted as it streams past, not held.
fn stream_lines(
    reader: impl std::io::Read + Send + 'static,
    lines: std::sync::mpsc::Sender<(usize, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(reader);
        let (mut len, mut head) = (0usize, Vec::new());
        loop {
            let chunk = match std::io::BufRead::fill_buf(&mut reader) {
                Ok([]) | Err(_) => return,
                Ok(chunk) => chunk,
            };
            let (part, used) = match chunk.iter().position(|b| *b == b'\n') {
                Some(at) => (&chunk[..at], at + 1),
                None => (chunk, chunk.len()),
            };
            len += part.len();
            head.extend_from_slice(&part[..part.len().min(100 - head.len().min(100))]);
            let ends = used > part.len();
            std::io::BufRead::consume(&mut reader, used);
            if ends {
                let line = String::from_utf8_lossy(&head).into_owned();
                if lines.send((len, line)).is_err() {
                    return;
                }
                (len, head) = (0, Vec::new());
            }
        }
    })
}

/// The peak resident memory (`VmHWM`) of process `pid`, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"))
}

/// A 200 MB line on standard input is reported (by number) and skipped as it streams past: the
/// process's peak memory stays under 32 MiB, and the URL after it is still decoded.
#[test]
fn decode_url_skips_a_200_mb_line_without_holding_it() {
    const HUGE: usize = 200 * 1000 * 1000;
    let mut child = tapfwd()
        .arg("decode-url")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, lines) = std::sync::mpsc::channel();
    let reader = stream_lines(child.stdout.take().unwrap(), tx);
    let (close_tx, close) = std::sync::mpsc::channel::<()>();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(format!("{V3}\nhttps://x.test/").as_bytes())?;
        let chunk = vec![b'a'; 1 << 20];
        let mut sent = 0;
        while sent < HUGE {
            let n = chunk.len().min(HUGE - sent);
            stdin.write_all(&chunk[..n])?;
            sent += n;
        }
        stdin.write_all(format!("\n{PLAIN}\n").as_bytes())?;
        // Standard input stays open until the memory is read, so the process is still there.
        let _ = close.recv();
        Ok::<_, std::io::Error>(())
    });
    let patience = support::PATIENCE;
    let mut got = Vec::new();
    while got.last().map(|(_, l): &(usize, String)| l.as_str()) != Some(PLAIN) {
        let line = lines
            .recv_timeout(patience)
            .unwrap_or_else(|_| panic!("no more output after {got:?}"));
        got.push(line);
    }
    let peak_kib = peak_rss_kib(pid);
    close_tx.send(()).unwrap();
    writer.join().unwrap().unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    assert!(
        peak_kib < 32 * 1024,
        "peak resident memory {peak_kib} KiB for a {HUGE}-byte line"
    );
    let printed: Vec<&str> = got.iter().map(|(_, l)| l.as_str()).collect();
    assert_eq!(printed, [V3_DECODED, PLAIN]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("line 2: longer than 65536 bytes, skipped"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

/// A config with one tenant of the simulator, its secret in `$LOOKUP_TEST_SECRET`, and a second
/// tenant whose secret variable is unset (lookup reads only the tenant it is asked about).
fn lookup_config(dir: &std::path::Path, base_url: &str) -> std::path::PathBuf {
    let text = format!(
        "state_dir = {state:?}\n[sinks.archive]\ntype = \"file\"\npath = {events:?}\n\
         [tenants.acme]\nbase_url = \"{base_url}\"\nprincipal = \"tenant-0001\"\n\
         secret_env = \"LOOKUP_TEST_SECRET\"\nsinks = [\"archive\"]\n\
         [tenants.other]\nbase_url = \"{base_url}\"\nprincipal = \"tenant-0002\"\n\
         secret_env = \"LOOKUP_TEST_UNSET\"\nsinks = [\"archive\"]\n",
        state = dir.join("state").display().to_string(),
        events = dir.join("events.ndjson").display().to_string(),
    );
    let path = dir.join("tapfwd.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn lookup(config: &std::path::Path, secret: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = tapfwd();
    cmd.args(["lookup", "--config"])
        .arg(config)
        .args(args)
        .env("LOOKUP_TEST_SECRET", secret)
        .env_remove("LOOKUP_TEST_UNSET");
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_prints_the_apis_json_with_the_tenants_credentials() {
    use tapfwd::clock::Clock;
    use tapfwd::simulate::SimTenant;

    let sim = support::Sim::start(
        vec![
            SimTenant::new("tenant-0001", "secret-0001", 600),
            SimTenant::new("tenant-0002", "secret-0002", 600),
        ],
        42,
        Clock::System,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let config = lookup_config(dir.path(), &sim.base_url());
    let now = chrono::Utc::now();
    let events = sim.sim.expected_events(
        "tenant-0001",
        now - chrono::Duration::hours(3),
        now - chrono::Duration::hours(1),
    );
    let (mut threat, mut campaign) = (None, None);
    for e in &events {
        let v: serde_json::Value = serde_json::from_slice(&e.raw).unwrap();
        let info = v["threatsInfoMap"].get(0).cloned().unwrap_or(v);
        threat.get_or_insert(info["threatID"].as_str().unwrap().to_owned());
        if let Some(c) = info["campaignID"].as_str().or(info["campaignId"].as_str()) {
            campaign.get_or_insert(c.to_owned());
        }
    }
    let (threat, campaign) = (threat.unwrap(), campaign.unwrap());

    let out = lookup(
        &config,
        "secret-0001",
        &["--tenant", "acme", "threat", &threat],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = sim.sim.threat_summary("tenant-0001", &threat).unwrap();
    want.push(b'\n');
    assert_eq!(out.stdout, want);

    let out = lookup(
        &config,
        "secret-0001",
        &["--tenant", "acme", "campaign", &campaign],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = sim.sim.campaign("tenant-0001", &campaign).unwrap();
    want.push(b'\n');
    assert_eq!(out.stdout, want);

    for (id, scope) in [(&threat, "THREAT"), (&campaign, "CAMPAIGN")] {
        let out = lookup(
            &config,
            "secret-0001",
            &["--tenant", "acme", "forensics", id],
        )
        .await;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["reports"][0]["scope"], scope);
    }
    let log = sim.sim.request_log("tenant-0001");
    assert_eq!(log.len(), 4);
    assert!(log.iter().all(|r| !r.path.starts_with("/v2/siem")));

    // An unknown id: exit 1, named, nothing on stdout.
    let out = lookup(
        &config,
        "secret-0001",
        &["--tenant", "acme", "threat", "0123abcd"],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with("tapfwd: tenant acme: threat 0123abcd: not found (404)"),
        "{stderr}"
    );

    // Wrong secret: the daemon's message, and the secret is nowhere.
    let out = lookup(
        &config,
        "wrong-secret-value",
        &["--tenant", "acme", "threat", &threat],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("credentials rejected (401)"), "{stderr}");
    assert!(!stderr.contains("wrong-secret-value"));

    // The threat API failing: the status and body, exit 1.
    sim.sim
        .inject_intel("tenant-0001", [tapfwd::simulate::Fault::Status(503)]);
    let out = lookup(
        &config,
        "secret-0001",
        &["--tenant", "acme", "threat", &threat],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("server error (503)"), "{stderr}");

    // An unknown tenant, and a tenant whose secret is not set, are named.
    let out = lookup(
        &config,
        "secret-0001",
        &["--tenant", "nobody", "threat", &threat],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no tenant `nobody`"));
    let out = lookup(
        &config,
        "secret-0001",
        &["--tenant", "other", "threat", &threat],
    )
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenants.other.secret_env"));
}
