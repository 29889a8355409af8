//! Target policy: which device addresses the connector may reach (`allowed_targets`).
//!
//! Checked before any connection is attempted, on the resolved address (so a hostname
//! cannot smuggle a forbidden IP), and again inside the DNS resolver the HTTP client uses
//! (so DNS rebinding between check and connect cannot either).
//! Must never: allow link-local / cloud-metadata addresses or the connector's own health
//! port, whatever the allowlist says.

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// One allowlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// An address range, optionally one port only.
    Net(IpNet, Option<u16>),
    /// A hostname as written in the device URL, optionally one port only.
    Host(String, Option<u16>),
}

/// The ranges allowed when `allowed_targets` is not set: RFC 1918, loopback, IPv6 ULA.
pub const DEFAULT_ALLOWED: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "127.0.0.0/8",
    "::1/128",
    "fc00::/7",
];

#[derive(Debug, Clone)]
pub struct TargetPolicy {
    rules: Vec<Rule>,
    /// The connector's own health listener; never a target.
    health: Option<SocketAddr>,
}

impl TargetPolicy {
    /// Parses allowlist entries: `10.0.0.0/8`, `192.168.1.50`, `192.168.1.50:80`,
    /// `192.168.1.0/24:8080`, `[fd00::1]:443`, `fd00::/8`, `turnstile.lan`, `turnstile.lan:80`.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let rules = entries
            .iter()
            .map(|e| parse_rule(e.as_ref().trim()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            rules,
            health: None,
        })
    }

    pub fn default_private() -> Self {
        Self::parse(DEFAULT_ALLOWED).expect("built-in ranges parse")
    }

    /// Forbids the connector's own health endpoint.
    pub fn with_health(mut self, addr: SocketAddr) -> Self {
        self.health = Some(addr);
        self
    }

    /// Checks a resolved address. The error says why, for TARGET_FORBIDDEN.
    pub fn check_addr(&self, ip: IpAddr, port: u16) -> Result<(), String> {
        let ip = ip.to_canonical();
        if let Some(why) = always_denied(ip) {
            return Err(format!("{ip} is {why} and never reachable"));
        }
        if self.is_health(ip, port) {
            return Err(format!("{ip}:{port} is the connector's own health port"));
        }
        let allowed = self.rules.iter().any(|r| match r {
            Rule::Net(net, p) => net.contains(&ip) && p.is_none_or(|p| p == port),
            Rule::Host(..) => false,
        });
        if allowed {
            Ok(())
        } else {
            Err(format!(
                "{} is not in allowed_targets",
                SocketAddr::new(ip, port)
            ))
        }
    }

    /// Whether a hostname (not an IP) is allowed by name. Its resolved addresses must still
    /// pass [`check_addr`](Self::check_addr) for everything but the range rules.
    pub fn host_rule_allows(&self, host: &str, port: u16) -> bool {
        self.rules.iter().any(|r| match r {
            Rule::Host(h, p) => h.eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port),
            Rule::Net(..) => false,
        })
    }

    /// Checks an address reached through a hostname: an explicit host rule admits it,
    /// but the always-denied ranges and the health port still apply.
    pub fn check_resolved(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), String> {
        match self.check_addr(ip, port) {
            Ok(()) => Ok(()),
            Err(e) if self.host_rule_allows(host, port) => {
                let ip = ip.to_canonical();
                if always_denied(ip).is_some() || self.is_health(ip, port) {
                    Err(e)
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(format!("{host} resolves to {e}")),
        }
    }

    /// The health listener, reached on loopback, on its own address, or — when it
    /// listens on all interfaces — on any address (we cannot cheaply tell this host's
    /// LAN addresses apart, and refusing one port everywhere costs little).
    fn is_health(&self, ip: IpAddr, port: u16) -> bool {
        self.health.is_some_and(|h| {
            port == h.port()
                && (h.ip().is_unspecified()
                    || ip.is_loopback()
                    || ip.is_unspecified()
                    || ip == h.ip())
        })
    }
}

fn always_denied(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            if v4.is_link_local() {
                Some("link-local (cloud metadata lives here)")
            } else if v4.is_unspecified() || v4.octets()[0] == 0 {
                Some("unspecified")
            } else if v4.is_multicast() || v4.is_broadcast() {
                Some("multicast/broadcast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let seg0 = v6.segments()[0];
            if (seg0 & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if v6.segments()[..6] == [0xfd00, 0xec2, 0, 0, 0, 0] {
                Some("a cloud metadata address")
            } else {
                None
            }
        }
    }
}

fn parse_rule(s: &str) -> Result<Rule, String> {
    let bad = || {
        format!(
            "invalid allowed_targets entry {s:?}: expected CIDR, IP, IP:port, host or host:port"
        )
    };
    if s.is_empty() {
        return Err(bad());
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Ok(Rule::Net(IpNet::from(sa.ip()), Some(sa.port())));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(Rule::Net(IpNet::from(ip), None));
    }
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(Rule::Net(net.trunc(), None));
    }
    if let Some((left, port)) = s.rsplit_once(':') {
        let port: u16 = port.parse().map_err(|_| bad())?;
        let left = left.trim_start_matches('[').trim_end_matches(']');
        if let Ok(net) = left.parse::<IpNet>() {
            return Ok(Rule::Net(net.trunc(), Some(port)));
        }
        return valid_host(left)
            .map(|h| Rule::Host(h, Some(port)))
            .ok_or_else(bad);
    }
    valid_host(s).map(|h| Rule::Host(h, None)).ok_or_else(bad)
}

fn valid_host(h: &str) -> Option<String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !h.starts_with('-')
        // A numeric last label means an (invalid) IP address, not a name.
        && !h.rsplit('.').next().is_some_and(|l| l.chars().all(|c| c.is_ascii_digit()));
    ok.then(|| h.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_allow_private_and_deny_metadata() {
        let p = TargetPolicy::default_private().with_health("127.0.0.1:22100".parse().unwrap());
        let cases: &[(&str, u16, bool)] = &[
            ("192.168.1.50", 80, true),
            ("10.1.2.3", 443, true),
            ("172.20.0.1", 80, true),
            ("172.32.0.1", 80, false),
            ("127.0.0.1", 8080, true),
            ("::1", 80, true),
            ("fd12::1", 80, true),
            ("::ffff:192.168.1.1", 80, true),
            ("8.8.8.8", 53, false),
            ("169.254.169.254", 80, false),
            ("fe80::1", 80, false),
            ("fd00:ec2::254", 80, false),
            ("0.0.0.0", 80, false),
            ("127.0.0.1", 22100, false),
            ("::1", 22100, false),
            ("127.0.0.2", 22100, false),
            ("192.168.1.50", 22100, true),
        ];
        for (addr, port, ok) in cases {
            assert_eq!(p.check_addr(ip(addr), *port).is_ok(), *ok, "{addr}:{port}");
        }
        // Health on all interfaces: its port is refused on a LAN address too.
        let all = TargetPolicy::default_private().with_health("0.0.0.0:22100".parse().unwrap());
        assert!(all.check_addr(ip("192.168.1.50"), 22100).is_err());
        assert!(all.check_addr(ip("192.168.1.50"), 80).is_ok());
    }

    #[test]
    fn explicit_list_is_exact() {
        let p = TargetPolicy::parse(&[
            "127.0.0.1:8080",
            "192.168.1.0/24",
            "10.0.0.0/8:443",
            "[::1]:9000",
            "catraca.lan:80",
            "169.254.0.0/16",
        ])
        .unwrap();
        assert!(p.check_addr(ip("127.0.0.1"), 8080).is_ok());
        assert!(p.check_addr(ip("127.0.0.1"), 8081).is_err());
        assert!(p.check_addr(ip("192.168.1.9"), 1).is_ok());
        assert!(p.check_addr(ip("10.9.9.9"), 443).is_ok());
        assert!(p.check_addr(ip("10.9.9.9"), 80).is_err());
        assert!(p.check_addr(ip("::1"), 9000).is_ok());
        assert!(
            p.check_addr(ip("169.254.169.254"), 80).is_err(),
            "metadata stays denied even if listed"
        );
        assert!(p.check_resolved("catraca.lan", ip("127.0.0.5"), 80).is_ok());
        assert!(p
            .check_resolved("catraca.lan", ip("169.254.1.1"), 80)
            .is_err());
        assert!(p.check_resolved("other.lan", ip("127.0.0.5"), 80).is_err());
    }

    #[test]
    fn what_is_never_reachable_stays_so_under_an_allow_everything_list() {
        let p = TargetPolicy::parse(&["0.0.0.0/0", "::/0"])
            .unwrap()
            .with_health("192.168.1.5:22100".parse().unwrap());
        for never in [
            "169.254.1.1",
            "0.1.2.3",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "fe80::1",
            "febf::1",
            "::",
            "ff02::1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(p.check_addr(ip(never), 80).is_err(), "{never}");
        }
        for fine in ["1.2.3.4", "fec0::1", "2001:db8::1", "192.168.1.5"] {
            assert!(p.check_addr(ip(fine), 80).is_ok(), "{fine}");
        }
        // The health port on the LAN address it is bound to, and only there.
        assert!(p.check_addr(ip("192.168.1.5"), 22100).is_err());
        assert!(p.check_addr(ip("192.168.1.6"), 22100).is_ok());
    }

    #[test]
    fn bad_entries_are_rejected() {
        for bad in ["", "300.1.1.1", "10.0.0.0/33", "host:port", "a b", "-x"] {
            assert!(TargetPolicy::parse(&[bad]).is_err(), "{bad}");
        }
    }
}
