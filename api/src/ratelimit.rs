//! Token-bucket rate limits (governor): per remote session and per connector (for the
//! gateway and proxy-http), and per source address plus one global bucket for the
//! public claim endpoint.
//!
//! Keyed state grows with distinct keys; [`RateLimits::prune`] (run by the maintenance
//! loop) drops buckets that are full again, so idle keys cost nothing.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// One bucket: `per_second` sustained, `burst` at once. Either at 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Rate {
    /// No limit at all.
    pub const UNLIMITED: Rate = Rate {
        per_second: 0.0,
        burst: 0,
    };

    /// Whether this rate limits anything (`0` in either field: no limit).
    pub fn limits(self) -> bool {
        self.per_second > 0.0 && self.burst > 0
    }

    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst.max(1)).expect("max(1)");
        let period = Duration::from_secs_f64(1.0 / self.per_second.max(1e-6));
        Quota::with_period(period)
            .expect("period is positive")
            .allow_burst(burst)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimitConfig {
    /// Requests per remote session (a device UI page loads many assets at once).
    pub session: Rate,
    /// Requests per connector, gateway and proxy-http together.
    pub connector: Rate,
    /// Pairing-code claims per source address.
    pub claim: Rate,
    /// Pairing-code claims from all addresses together: many addresses (a botnet, a
    /// /48 of IPv6) guessing codes at once get no more tries than this. Legitimate
    /// claims are rare (one per connector paired); while someone burns this bucket,
    /// a real claim gets 429 too and is retried.
    pub claim_global: Rate,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            session: Rate {
                per_second: 50.0,
                burst: 200,
            },
            connector: Rate {
                per_second: 200.0,
                burst: 400,
            },
            claim: Rate {
                per_second: 10.0 / 60.0,
                burst: 5,
            },
            claim_global: Rate {
                per_second: 1.0,
                burst: 30,
            },
        }
    }
}

/// Over the limit; retry after this long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub retry_after: Duration,
}

impl Limited {
    /// Whole seconds for `Retry-After`, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// The buckets; `None` where the configured rate is "no limit".
pub struct RateLimits {
    session: Option<DefaultKeyedRateLimiter<String>>,
    connector: Option<DefaultKeyedRateLimiter<i32>>,
    claim: Option<DefaultKeyedRateLimiter<IpAddr>>,
    claim_global: Option<DefaultDirectRateLimiter>,
    /// Store lookups of published-route names per client address.
    route_lookup: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

fn check<K: Hash + Eq + Clone>(
    l: &Option<DefaultKeyedRateLimiter<K>>,
    key: &K,
) -> Result<(), Limited> {
    let Some(l) = l else { return Ok(()) };
    l.check_key(key).map_err(|not_until| Limited {
        retry_after: not_until.wait_time_from(DefaultClock::default().now()),
    })
}

fn keyed<K: Hash + Eq + Clone>(rate: Rate) -> Option<DefaultKeyedRateLimiter<K>> {
    rate.limits()
        .then(|| DefaultKeyedRateLimiter::keyed(rate.quota()))
}

/// Store lookups of route names one client address may cause: 5 a second, 50 at once.
/// Names already known (or known not to exist) in the last
/// [`crate::published::ROUTE_CACHE_TTL`] cost nothing.
pub const LOOKUP_RATE: Rate = Rate {
    per_second: 5.0,
    burst: 50,
};

impl RateLimits {
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self {
            session: keyed(cfg.session),
            connector: keyed(cfg.connector),
            claim: keyed(cfg.claim),
            route_lookup: keyed(LOOKUP_RATE),
            claim_global: cfg
                .claim_global
                .limits()
                .then(|| DefaultDirectRateLimiter::direct(cfg.claim_global.quota())),
        }
    }

    pub fn session(&self, session_id: &str) -> Result<(), Limited> {
        check(&self.session, &session_id.to_owned())
    }

    pub fn connector(&self, connector_id: i32) -> Result<(), Limited> {
        check(&self.connector, &connector_id)
    }

    /// Keyed by IPv4 address, or by IPv6 /64: one host usually holds a whole /64, so
    /// per-address buckets would give it billions of tries. Then the global bucket (an
    /// address over its own limit does not drain it).
    pub fn claim(&self, source: IpAddr) -> Result<(), Limited> {
        check(&self.claim, &client_key(source))?;
        let Some(global) = &self.claim_global else {
            return Ok(());
        };
        global.check().map_err(|not_until| Limited {
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// A store lookup of a published route's name for `source` (IPv6: its /64).
    pub fn route_lookup(&self, source: IpAddr) -> Result<(), Limited> {
        check(&self.route_lookup, &client_key(source))
    }

    pub fn prune(&self) {
        self.route_lookup.iter().for_each(|l| l.retain_recent());
        self.session.iter().for_each(|l| l.retain_recent());
        self.connector.iter().for_each(|l| l.retain_recent());
        self.claim.iter().for_each(|l| l.retain_recent());
    }
}

/// An address as rate limits key it: IPv4 as is, IPv6 by its /64 (one host usually
/// holds a whole /64, so per-address buckets would give it billions of tries).
pub fn client_key(source: IpAddr) -> IpAddr {
    match source {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut o = v6.octets();
                o[8..].fill(0);
                IpAddr::V6(o.into())
            }
        },
        v4 => v4,
    }
}

/// Client addresses one published route remembers between prunes. Past this the
/// route's per-client buckets are pruned at once, and if that frees nothing they are
/// dropped (every client starts full again): a flood of addresses costs at most this
/// many entries (~100 bytes each), and the route's own bucket still holds.
pub const ROUTE_CLIENTS_MAX: usize = 50_000;

/// A published route's buckets: one for the route (`per_minute` sustained, half a
/// minute's worth at once), one per client address (a quarter of that, with a burst of
/// up to 20 so one page and its assets load at once).
pub struct RouteBuckets {
    route: DefaultDirectRateLimiter,
    client_quota: Quota,
    clients: std::sync::RwLock<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RouteBuckets {
    pub fn new(per_minute: u32) -> Self {
        let per_minute = per_minute.max(1);
        let route = Rate {
            per_second: f64::from(per_minute) / 60.0,
            burst: (per_minute / 2).max(1),
        };
        let client = Rate {
            per_second: (f64::from(per_minute) / 4.0).max(1.0) / 60.0,
            burst: (per_minute / 2).clamp(1, 20),
        };
        Self {
            route: DefaultDirectRateLimiter::direct(route.quota()),
            client_quota: client.quota(),
            clients: std::sync::RwLock::new(DefaultKeyedRateLimiter::keyed(client.quota())),
        }
    }

    /// The client's bucket first: a client over its share does not drain the route's.
    pub fn check(&self, client: IpAddr) -> Result<(), Limited> {
        let full = self.read_clients().len() >= ROUTE_CLIENTS_MAX;
        if full {
            let mut clients = self.clients.write().unwrap_or_else(|e| e.into_inner());
            clients.retain_recent();
            if clients.len() >= ROUTE_CLIENTS_MAX {
                *clients = DefaultKeyedRateLimiter::keyed(self.client_quota);
            }
        }
        let now = || DefaultClock::default().now();
        self.read_clients()
            .check_key(&client_key(client))
            .map_err(|n| Limited {
                retry_after: n.wait_time_from(now()),
            })?;
        self.route.check().map_err(|n| Limited {
            retry_after: n.wait_time_from(now()),
        })
    }

    fn read_clients(&self) -> std::sync::RwLockReadGuard<'_, DefaultKeyedRateLimiter<IpAddr>> {
        self.clients.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn prune(&self) {
        self.read_clients().retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_from_many_addresses_share_the_global_bucket() {
        let limits = RateLimits::new(RateLimitConfig::default());
        let global = RateLimitConfig::default().claim_global.burst;
        for i in 0..global {
            let ip = IpAddr::from([10, 0, (i / 256) as u8, i as u8]);
            assert!(limits.claim(ip).is_ok(), "try {i}");
        }
        let limited = limits.claim(IpAddr::from([10, 9, 9, 9])).unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1), "{limited:?}");
    }

    #[test]
    fn claims_from_one_ipv6_64_share_a_bucket() {
        let limits = RateLimits::new(RateLimitConfig::default());
        let burst = RateLimitConfig::default().claim.burst;
        for i in 0..burst {
            let ip: IpAddr = format!("2001:db8:1:2::{:x}", i + 1).parse().unwrap();
            assert!(limits.claim(ip).is_ok(), "try {i}");
        }
        let other_host_same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        assert!(limits.claim(other_host_same_64).is_err());
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(limits.claim(other_64).is_ok());
    }

    #[test]
    fn a_bucket_allows_its_burst_then_says_when_to_retry() {
        let limits = RateLimits::new(RateLimitConfig {
            session: Rate {
                per_second: 1.0,
                burst: 3,
            },
            ..Default::default()
        });
        for _ in 0..3 {
            limits.session("a").unwrap();
        }
        let limited = limits.session("a").unwrap_err();
        assert!(limited.retry_after <= Duration::from_secs(1), "{limited:?}");
        assert_eq!(limited.retry_after_secs(), 1);
        // Buckets are per key.
        limits.session("b").unwrap();
    }

    #[test]
    fn a_route_gives_each_client_a_share_and_holds_its_own_rate() {
        let b = RouteBuckets::new(120);
        let a = IpAddr::from([192, 0, 2, 1]);
        for i in 0..20 {
            assert!(b.check(a).is_ok(), "request {i}");
        }
        let limited = b.check(a).unwrap_err();
        assert!(limited.retry_after_secs() >= 1, "{limited:?}");
        // Others still get in, until the route's 60 are spent.
        for i in 0..40 {
            assert!(
                b.check(IpAddr::from([192, 0, 2, 10 + i as u8])).is_ok(),
                "{i}"
            );
        }
        assert!(b.check(IpAddr::from([192, 0, 2, 99])).is_err());
        // A small rate still lets one request through.
        let one = RouteBuckets::new(1);
        assert!(one.check(a).is_ok());
        assert!(one.check(a).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        for session in [
            Rate::UNLIMITED,
            Rate {
                per_second: 0.0,
                burst: 5,
            },
            Rate {
                per_second: 5.0,
                burst: 0,
            },
        ] {
            let limits = RateLimits::new(RateLimitConfig {
                session,
                ..Default::default()
            });
            for i in 0..10_000 {
                assert!(limits.session("a").is_ok(), "{session:?}: request {i}");
            }
            // The others keep their defaults.
            let burst = RateLimitConfig::default().connector.burst;
            for _ in 0..burst {
                limits.connector(1).unwrap();
            }
            assert!(limits.connector(1).is_err());
        }
    }
}
