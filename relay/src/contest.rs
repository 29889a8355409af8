//! Two installs sharing one connector token: when an identity whose connection keeps
//! being replaced counts as contested, and how long the contest stays shown.

use std::time::Duration;

/// Two installs sharing one token replace each other on every reconnect and neither
/// serves. A connector identity replaced this many times within [`FLAP_WINDOW`] is
/// contested: the established connection is kept and newcomers are refused.
pub(crate) const FLAP_REPLACEMENTS: usize = 2;
pub(crate) const FLAP_WINDOW: Duration = Duration::from_secs(60);

/// A contest stays visible in status this long after its last refusal.
pub(crate) const CONFLICT_SHOWN: Duration = Duration::from_secs(600);

/// A refused newcomer may be the live install and the established socket half-open: the
/// established one is probed and closed if it shows no sign of life within this.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Contest records kept at most (one per connector identity replaced recently; every
/// entry needs a valid token). Past it, stale entries are pruned, then the oldest.
pub(crate) const MAX_CONTESTS: usize = 4096;

#[derive(Default)]
pub(crate) struct Contest {
    /// When the identity's live connection was last replaced (newest last, at most
    /// [`FLAP_REPLACEMENTS`] kept).
    pub(crate) replaced: std::collections::VecDeque<std::time::Instant>,
    pub(crate) refused: u64,
    pub(crate) last_refused: Option<(std::time::Instant, std::time::SystemTime)>,
}

impl Contest {
    pub(crate) fn flapping(&self, now: std::time::Instant) -> bool {
        let recent = self
            .replaced
            .iter()
            .filter(|t| now.duration_since(**t) < FLAP_WINDOW)
            .count();
        let refusing = self
            .last_refused
            .is_some_and(|(t, _)| now.duration_since(t) < FLAP_WINDOW);
        recent >= FLAP_REPLACEMENTS || refusing
    }

    pub(crate) fn stale(&self, now: std::time::Instant) -> bool {
        let last = self.replaced.back().copied().into_iter();
        let last = last.chain(self.last_refused.map(|(t, _)| t)).max();
        last.is_none_or(|t| now.duration_since(t) >= CONFLICT_SHOWN)
    }
}
