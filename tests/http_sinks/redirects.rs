//! No HTTP sink follows a redirect (issue 14, item 7).

use serde_json::json;
use tapfwd::sinks::SinkError;

use crate::common::*;
use crate::support::fakes::Fault;

/// Issue 14, item 7: no HTTP sink follows a redirect. Each destination answers its first request
/// with a 307 pointing at its own working endpoint, so a client that followed it would deliver
/// and commit; instead the batch fails as a configuration error naming the `Location` (cut
/// before its query, with a token in its path scrubbed), uncommitted and not retried.
#[tokio::test]
async fn no_http_sink_follows_a_redirect_and_the_error_names_the_location() {
    fn check(err: &SinkError, sink: &str, location: &str, secret: &str) {
        assert!(matches!(err, SinkError::Rejected(_)), "{err:?}");
        assert!(!err.is_retryable());
        let text = err.to_string();
        assert!(text.contains(sink), "{text}");
        assert!(
            text.contains("HTTP 307 Temporary Redirect")
                && text.contains(&format!("redirects to `{location}`"))
                && text.contains("follow no redirect")
                && text.contains("a configuration error"),
            "{text}"
        );
        assert!(!text.contains(secret), "secret leaked: {text}");
    }

    // Generic HTTP: the Location's query carries the bearer token; it is cut.
    let (fake, url) = plain_server(&["bearer-7f3e9a"]).await;
    fake.push_fault(Fault::redirect(307, &format!("{url}?token=bearer-7f3e9a")));
    let s = sink(
        "hook",
        json!({"type":"http","url":url,"auth":{"strategy":"bearer","token":"bearer-7f3e9a"},"retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "http sink `hook`",
        &url,
        "bearer-7f3e9a",
    );
    assert_eq!(commits, 0, "a redirected batch is not committed");
    assert_eq!(fake.requests().len(), 1, "the redirect was followed");
    assert!(fake.events().is_empty());

    // Splunk HEC.
    let (fake, url) = hec_server(false).await;
    let event_url = format!("{url}/services/collector/event");
    fake.push_fault(Fault::redirect(307, &event_url));
    let s = sink(
        "splunk",
        json!({"type":"splunk_hec","url":url,"token":"hec-token-acme","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "splunk_hec sink `splunk`",
        &event_url,
        "hec-token-acme",
    );
    assert_eq!(commits, 0);
    assert_eq!(fake.requests().len(), 1, "the redirect was followed");
    assert!(fake.events().is_empty());

    // LogScale.
    let (fake, url) = logscale_server().await;
    let ingest = format!("{url}/api/v1/ingest/humio-structured");
    fake.push_fault(Fault::redirect(307, &ingest));
    let s = sink(
        "humio",
        json!({"type":"logscale","url":url,"token":"ingest-token-acme","retry":fast_retry()}),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "logscale sink `humio`",
        &ingest,
        "ingest-token-acme",
    );
    assert_eq!(commits, 0);
    assert!(fake.events().is_empty(), "the redirect was followed");

    // Sentinel, the Entra ID token request: the Location echoes the client secret in its path
    // (the fake's token route takes any directory there, so following it would get a token).
    let (fake, url) = azure_server(3600).await;
    fake.with(|s| s.client_secret = "cs-0d9c8b7a6f".into());
    let tenant_id = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    fake.with(|s| {
        s.token_faults.push_back(Fault::redirect(
            307,
            &format!("{url}/cs-0d9c8b7a6f/oauth2/v2.0/token"),
        ))
    });
    let s = sink(
        "sentinel",
        sentinel_config(&url, json!({"client_secret": "cs-0d9c8b7a6f"})),
    );
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    let err = result.unwrap_err();
    check(
        &err,
        "sentinel sink `sentinel`: token request",
        &format!("{url}/[redacted]/oauth2/v2.0/token"),
        "cs-0d9c8b7a6f",
    );
    assert!(err.to_string().contains(tenant_id), "{err}");
    assert_eq!(commits, 0);
    assert_eq!(
        fake.with(|s| s.token_requests),
        1,
        "the redirect was followed"
    );
    assert!(fake.requests().is_empty() && fake.events().is_empty());

    // Sentinel, the ingestion request: a token is issued, then the DCE redirects.
    let (fake, url) = azure_server(3600).await;
    let stream_url = format!(
        "{url}/dataCollectionRules/{DCR}/streams/Custom-ProofpointTAP?api-version=2023-01-01"
    );
    fake.push_fault(Fault::redirect(307, &stream_url));
    let s = sink("sentinel", sentinel_config(&url, json!({})));
    let (result, commits) = deliver(&*s, "acme", &batch()).await;
    check(
        &result.unwrap_err(),
        "sentinel sink `sentinel`: POST",
        &format!("{url}/dataCollectionRules/{DCR}/streams/Custom-ProofpointTAP"),
        "s3cr3t~value+/=",
    );
    assert_eq!(commits, 0);
    assert_eq!(fake.requests().len(), 1, "the redirect was followed");
    assert!(fake.events().is_empty());
}
