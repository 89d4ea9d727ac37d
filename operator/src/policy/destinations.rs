//! Which network addresses sources may reach, after DNS.
//!
//! The operator runs inside the cluster, next to things no tenant should reach
//! through it: the cloud's metadata service (link-local), the API server and
//! other Services and Pods (private and the cluster's own ranges), and the
//! operator's own loopback listeners. An allowlist of host names does not help
//! when a name resolves to such an address. So every address a fetch would
//! connect to is checked: loopback, link-local, private, shared (CGNAT),
//! unspecified, multicast and reserved ranges, and any ranges the operator is
//! told are the cluster's, are refused unless explicitly allowed.
//!
//! A refusal names the host, never the addresses or what answers there, so the
//! check is no oracle for what the cluster holds.

use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

/// Ranges refused unless allowed: not reachable on the public internet, or
/// reaching the operator's own neighbourhood.
const REFUSED: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// A source host whose address sources may not reach.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "source host {host:?} is not reachable from the operator: sources may not reach loopback, link-local, \
     private or the cluster's own addresses unless the operator's --allowed-destinations \
     (operator.allowedDestinations) names them"
)]
pub struct DestinationDenied {
    pub host: String,
}

/// The addresses sources may connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destinations {
    refused: Vec<IpNet>,
    allowed: Vec<IpNet>,
}

impl Default for Destinations {
    fn default() -> Self {
        Destinations::new(Vec::new(), Vec::new())
    }
}

impl Destinations {
    /// The built-in refused ranges plus `denied` (e.g. the cluster's Pod and
    /// Service ranges when they are public addresses), except what `allowed`
    /// names, which wins.
    pub fn new(allowed: Vec<IpNet>, denied: Vec<IpNet>) -> Self {
        let mut refused: Vec<IpNet> = REFUSED.iter().map(|net| net.parse().expect("a valid built-in range")).collect();
        refused.extend(denied);
        Destinations { refused, allowed }
    }

    /// Whether a fetch may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.allowed.iter().any(|net| net.contains(&ip)) || !self.refused.iter().any(|net| net.contains(&ip))
    }

    /// `Ok` when every one of `addresses`, which `host` resolved to, may be
    /// reached (for fetchers that resolve again themselves, any refused one
    /// could be the one they pick).
    pub fn check_all(&self, host: &str, addresses: &[IpAddr]) -> Result<(), DestinationDenied> {
        match addresses.iter().all(|ip| self.permits(*ip)) {
            true => Ok(()),
            false => Err(DestinationDenied { host: host.to_owned() }),
        }
    }
}

/// Parses a network range (`10.0.0.0/8`, `fd00::/8`) or a single address.
pub fn parse_range(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    IpNet::from_str(text)
        .or_else(|_| IpAddr::from_str(text).map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or a range such as 10.0.0.0/8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_operators_neighbourhood_is_refused_by_default() {
        let default = Destinations::default();
        for refused in [
            "127.0.0.1",
            "169.254.169.254",
            "10.96.0.1",
            "172.20.0.5",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!default.permits(ip(refused)), "{refused} must be refused");
        }
        for public in ["93.184.215.14", "140.82.112.3", "2606:4700::6810:84e5"] {
            assert!(default.permits(ip(public)), "{public} must be allowed");
        }
    }

    #[test]
    fn allowed_ranges_win_and_denied_ones_add_to_the_defaults() {
        let destinations = Destinations::new(
            vec![parse_range("127.0.0.1").unwrap(), parse_range("10.1.0.0/16").unwrap()],
            vec![parse_range("203.0.113.0/24").unwrap()],
        );
        assert!(destinations.permits(ip("127.0.0.1")));
        assert!(!destinations.permits(ip("127.0.0.2")));
        assert!(destinations.permits(ip("10.1.2.3")));
        assert!(!destinations.permits(ip("10.2.0.1")));
        assert!(!destinations.permits(ip("203.0.113.9")));
        assert!(parse_range("10.0.0.0/33").is_err());
    }

    #[test]
    fn one_refused_address_refuses_the_host_and_the_message_names_no_address() {
        let default = Destinations::default();
        let denied = default.check_all("rebind.example", &[ip("93.184.215.14"), ip("169.254.169.254")]).unwrap_err();
        assert!(!denied.to_string().contains("169.254"), "{denied}");
        assert_eq!(default.check_all("public.example", &[ip("93.184.215.14")]), Ok(()));
    }
}
