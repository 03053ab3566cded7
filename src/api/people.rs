//! The TAP People API (proofpoint-feeds.md): Very Attacked People and top clickers. A tenant's
//! `[tenants.NAME.people]` settings are in [`crate::config::people`].
//!
//! `GET /v2/people/vap?window=14|30|90&size=&page=` and `/v2/people/top-clickers?…` answer one
//! page of `users[]` with the totals and the `interval` the list covers. Each endpoint allows 50
//! requests per rolling 24 hours per credential, paging included, from a pool of its own (not the
//! SIEM one). Pages are fetched through [`super::intel::IntelClient::get_url`] (the same Basic
//! credentials, overall deadline, size bound and scrubbing), so a reply maps to [`super::ApiError`]
//! as a lookup's does. What is read here is parsed without being re-encoded: each user object is
//! kept as the bytes the API sent (invariant 5).

use serde::Deserialize;

use crate::event::EventKind;

/// Requests each People endpoint allows per rolling 24 hours, per credential.
pub const REQUESTS_PER_DAY: u32 = 50;
/// The largest page `top-clickers` serves.
pub const TOP_CLICKERS_MAX_SIZE: u32 = 200;
/// The page size asked of `vap` (its default and the size its paging is tested with).
pub const VAP_PAGE_SIZE: u32 = 1000;

/// One People list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// Very Attacked People, `/v2/people/vap`.
    Vap,
    /// Top clickers, `/v2/people/top-clickers`.
    TopClickers,
}

impl Feed {
    pub const ALL: [Feed; 2] = [Feed::Vap, Feed::TopClickers];

    /// The config name and the source's name in status (`vap`, `top_clickers`).
    pub fn as_str(self) -> &'static str {
        match self {
            Feed::Vap => "vap",
            Feed::TopClickers => "top_clickers",
        }
    }

    /// The endpoint's last path segment.
    pub fn path(self) -> &'static str {
        match self {
            Feed::Vap => "vap",
            Feed::TopClickers => "top-clickers",
        }
    }

    /// The kind its users are delivered as (`vap`, `topClickers`).
    pub fn kind(self) -> EventKind {
        match self {
            Feed::Vap => EventKind::Vap,
            Feed::TopClickers => EventKind::TopClickers,
        }
    }

    /// The page size asked for.
    pub fn page_size(self) -> u32 {
        match self {
            Feed::Vap => VAP_PAGE_SIZE,
            Feed::TopClickers => TOP_CLICKERS_MAX_SIZE,
        }
    }

    /// The request URL of page `page` (1-based) for a `window_days` list under `base_url`.
    pub fn url(self, base_url: &str, window_days: u32, page: u32) -> Option<reqwest::Url> {
        let mut url = reqwest::Url::parse(base_url).ok()?;
        url.path_segments_mut()
            .ok()?
            .pop_if_empty()
            .extend(["v2", "people", self.path()]);
        url.query_pairs_mut()
            .append_pair("window", &window_days.to_string())
            .append_pair("size", &self.page_size().to_string())
            .append_pair("page", &page.to_string());
        Some(url)
    }
}

/// One page of a People answer: the users as sent, and what says how many there are.
#[derive(Debug, Deserialize)]
pub struct Page<'a> {
    #[serde(borrow, default)]
    pub users: Vec<&'a serde_json::value::RawValue>,
    /// The span the list covers (`2026-09-03T11:49:00Z/2026-12-02T11:49:00Z`).
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default, rename = "totalVapUsers")]
    pub total_vap_users: Option<u64>,
    #[serde(default, rename = "totalTopClickers")]
    pub total_top_clickers: Option<u64>,
}

impl Page<'_> {
    /// The list's total, when the answer says.
    pub fn total(&self) -> Option<u64> {
        self.total_vap_users.or(self.total_top_clickers)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn urls_pages_and_validation() {
        let u = Feed::TopClickers
            .url("https://tap-api-v2.proofpoint.com/", 30, 2)
            .unwrap();
        assert_eq!(
            u.as_str(),
            "https://tap-api-v2.proofpoint.com/v2/people/top-clickers?window=30&size=200&page=2"
        );
        let page: Page<'_> = serde_json::from_str(
            r#"{"users":[{"identity":{"emails":["a@x"]}} , {"b":1}],"totalVapUsers":2,"interval":"a/b"}"#,
        )
        .unwrap();
        assert_eq!(page.users[0].get(), r#"{"identity":{"emails":["a@x"]}}"#);
        assert_eq!(page.total(), Some(2));
    }

    /// A page request's reply, as the People source sees it: the status decides the
    /// disposition, and the message names it.
    #[tokio::test]
    async fn page_replies_map_to_their_disposition() {
        use crate::api::intel::IntelClient;
        use crate::api::{test_server, Disposition};
        use secrecy::SecretString;
        let client = IntelClient::new(Duration::from_secs(10)).unwrap();
        let secret = SecretString::from("people-sekrit");
        let cases = [
            (401, "", Disposition::Credentials),
            (403, "", Disposition::Credentials),
            (429, "", Disposition::Throttled),
            (500, "oops people-sekrit", Disposition::Transient),
            (503, "", Disposition::Transient),
            (404, "", Disposition::Rejected),
        ];
        for (status, body, disposition) in cases {
            let addr = test_server::answer(status, &[], body).await;
            let url = Feed::Vap.url(&format!("http://{addr}/"), 30, 1).unwrap();
            let e = client.get_url(url, "p", &secret).await.unwrap_err();
            assert_eq!(e.disposition(), disposition, "{status}: {e}");
            assert_eq!(e.status(), Some(status), "{e}");
            assert!(!e.to_string().contains("sekrit"), "{e}");
        }
        // A secret echoed across the 300th character of the body is scrubbed before the cut.
        for at in [285, 295, 299] {
            let body = format!("{}people-sekrit-0123456789 echoed", "x".repeat(at));
            let addr = test_server::answer(503, &[], &body).await;
            let url = Feed::Vap.url(&format!("http://{addr}/"), 30, 1).unwrap();
            let secret = SecretString::from("people-sekrit-0123456789");
            let e = client.get_url(url, "p", &secret).await.unwrap_err();
            assert!(!e.to_string().contains("people-s"), "{at}: {e}");
        }
        // A redirect is refused, not followed.
        let elsewhere = test_server::answer(200, &[], r#"{"users":[]}"#).await;
        let location = format!("http://{elsewhere}/v2/people/vap");
        let addr = test_server::answer(302, &[("Location", &location)], "").await;
        let url = Feed::Vap.url(&format!("http://{addr}/"), 30, 1).unwrap();
        let e = client.get_url(url, "p", &secret).await.unwrap_err();
        assert_eq!(e.class(), "redirect", "{e}");
        assert_eq!(e.disposition(), Disposition::Rejected, "{e}");
        // A 200 that is not JSON is asked for again.
        let addr = test_server::answer(200, &[], "<html>").await;
        let url = Feed::TopClickers
            .url(&format!("http://{addr}"), 14, 1)
            .unwrap();
        let e = client.get_url(url, "p", &secret).await.unwrap_err();
        assert_eq!(e.disposition(), Disposition::Transient, "{e}");
    }
}
