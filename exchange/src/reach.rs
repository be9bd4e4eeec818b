//! Which mints the exchange contacts (protocol §10). Offers name sat mints and pools announce
//! mint URLs; the exchange calls them to verify locks. So that nobody can point it at its own
//! network (server-side request forgery), it contacts a sat mint only if its operator allows it
//! (`[exchange].sat_mints`; empty: any), and a mint at a loopback, private or link-local address
//! only if the operator said so (`[exchange].private_mints`, for a local market).

use std::net::IpAddr;
use std::str::FromStr;

use cdk::mint_url::MintUrl;

/// Why a mint at `url` may not be contacted, if it may not: it names no host, or a private
/// address while `private_ok` is false. URLs with a backslash or user information are refused:
/// HTTP clients disagree on where their host starts.
pub fn address_refusal(url: &str, private_ok: bool) -> Option<String> {
    if url.contains('\\') || url.split("://").nth(1).unwrap_or(url).split(['/', '?', '#']).next().unwrap_or("").contains('@') {
        return Some(format!("{url} carries a backslash or user information"));
    }
    let host = match MintUrl::from_str(url).ok().and_then(|m| m.join("").ok()) {
        Some(u) => u.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase(),
        None => return Some(format!("{url} is not a mint URL")),
    };
    if host.is_empty() {
        return Some(format!("{url} names no host"));
    }
    let private = match IpAddr::from_str(&host) {
        Ok(ip) => is_private(ip),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    };
    (private && !private_ok).then(|| format!("{url} is at a loopback or private address, which this exchange does not contact (its operator can allow it: [exchange].private_mints)"))
}

/// Longest wait for a mint's name to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`address_refusal`], and for a mint named by a host name, why it may not be contacted
/// because the name resolves to a loopback or private address (a public-looking name can point
/// anywhere), or does not resolve within 5 s. A name that does not resolve at all is not refused
/// here: contacting it fails anyway. (The HTTP client resolves the name again when it connects:
/// a name whose answers change from one moment to the next is not caught.)
pub async fn resolved_refusal(url: &str, private_ok: bool) -> Option<String> {
    if let Some(why) = address_refusal(url, private_ok) {
        return Some(why);
    }
    if private_ok {
        return None;
    }
    let u = MintUrl::from_str(url).ok()?.join("").ok()?;
    let host = u.host_str()?.to_owned();
    if IpAddr::from_str(host.trim_start_matches('[').trim_end_matches(']')).is_ok() {
        return None;
    }
    let port = u.port_or_known_default().unwrap_or(443);
    // a name that does not resolve in time is not called (a slow answer may be another one)
    let addrs = match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host.as_str(), port))).await {
        Err(_) => return Some(format!("{url}: {host} did not resolve within {} s", RESOLVE_TIMEOUT.as_secs())),
        Ok(r) => r.ok()?,
    };
    let private: Vec<String> = addrs.map(|a| a.ip()).filter(|ip| is_private(*ip)).map(|ip| ip.to_string()).collect();
    (!private.is_empty()).then(|| {
        format!(
            "{url}: {host} resolves to a loopback or private address ({}), which this exchange does not contact (its operator can allow it: [exchange].private_mints)",
            private.join(", ")
        )
    })
}

/// Why the exchange does not trade at the sat mint `url`, if it does not.
pub fn sat_mint_refusal(url: &str, allowed: &[String], private_ok: bool) -> Option<String> {
    if !allowed.is_empty() && !allowed.iter().any(|a| same_mint(a, url)) {
        return Some(format!("{url} is not a sat mint this exchange trades at ({})", allowed.join(", ")));
    }
    address_refusal(url, private_ok)
}

/// Whether two URLs name the same mint (as cdk normalises them).
fn same_mint(a: &str, b: &str) -> bool {
    match (MintUrl::from_str(a), MintUrl::from_str(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a.trim_end_matches('/').eq_ignore_ascii_case(b.trim_end_matches('/')),
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            // IPv4 inside IPv6: mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, NAT64 64:ff9b::/96
            // and 6to4 2002:AABB:CCDD::
            let embedded = if let Some(v4) = v6.to_ipv4_mapped() {
                Some(v4)
            } else if s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified() || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let [.., a, b, c, d] = v6.octets();
                Some(std::net::Ipv4Addr::new(a, b, c, d))
            } else if s[0] == 0x2002 {
                let o = v6.octets();
                Some(std::net::Ipv4Addr::new(o[2], o[3], o[4], o[5]))
            } else {
                None
            };
            if let Some(v4) = embedded {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback() || v6.is_unspecified() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:3338",
            "http://localhost:3338",
            "http://10.1.2.3",
            "http://192.168.1.1",
            "http://172.16.0.1",
            "http://169.254.169.254/latest",
            "http://100.64.0.1",
            "http://0.0.0.0",
            "http://[::1]:3338",
            "http://[fd00::1]",
            "http://[fe80::1]",
            "http://[::ffff:127.0.0.1]",
            "http://[::127.0.0.1]",
            "http://[64:ff9b::a00:1]",
            "http://[2002:c0a8:101::1]",
            "http://localhost.:3338",
        ] {
            assert!(address_refusal(url, false).is_some_and(|r| r.contains("private_mints")), "{url}");
            assert_eq!(address_refusal(url, true), None, "{url}");
        }
        for url in ["https://mint.example.com", "https://8.8.8.8", "http://[2001:db8::1]"] {
            assert_eq!(address_refusal(url, false), None, "{url}");
        }
        assert!(address_refusal("not a url", true).is_some());
        // clients disagree on where the host of these starts: refused whatever the setting
        for url in ["http://mint.example.com\\@127.0.0.1:3338", "http://user@127.0.0.1:3338", "http://mint.example.com@127.0.0.1:3338/"] {
            assert!(address_refusal(url, true).is_some_and(|r| r.contains("user information")), "{url}");
        }
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_a_private_address_is_refused_unless_allowed() {
        // every machine resolves its own name (here through /etc/hosts), most often to loopback
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_owned();
        let resolved: Vec<IpAddr> = match tokio::net::lookup_host((name.as_str(), 80)).await {
            Ok(a) => a.map(|a| a.ip()).collect(),
            Err(_) => vec![],
        };
        if name.is_empty() || !resolved.iter().any(|ip| is_private(*ip)) {
            ehash_testkit::skipped(&format!("this machine's name {name:?} does not resolve to a private address ({resolved:?})"));
            return;
        }
        let url = format!("http://{name}:3338");
        assert_eq!(address_refusal(&url, false), None, "the name alone says nothing");
        let why = resolved_refusal(&url, false).await.expect("refused once resolved");
        assert!(why.contains("resolves to") && why.contains("private_mints"), "{why}");
        assert_eq!(resolved_refusal(&url, true).await, None);
        assert_eq!(resolved_refusal("http://mint.invalid:3338", false).await, None, "no answer, no refusal");
        assert!(resolved_refusal("http://127.0.0.1:3338", false).await.is_some());
    }

    #[test]
    fn an_allow_list_limits_the_sat_mints() {
        let allowed = vec!["https://sats.example.com/".to_owned()];
        assert_eq!(sat_mint_refusal("https://sats.example.com", &allowed, false), None);
        assert!(sat_mint_refusal("https://evil.example.com", &allowed, false).is_some_and(|r| r.contains("not a sat mint this exchange trades at")));
        assert_eq!(sat_mint_refusal("https://evil.example.com", &[], false), None);
        assert!(sat_mint_refusal("http://127.0.0.1:1", &[], false).is_some());
    }
}
