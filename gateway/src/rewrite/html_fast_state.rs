//! Where the fast path's tokenizer is between bytes: lol_html's states, merged where they
//! behave alike, and the end tags that take it out of raw text and script data.

/// Where the tokenizer is, between bytes (lol_html's states, merged where they behave alike).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum State {
    Data,
    /// RAWTEXT or RCDATA up to `</name` + a delimiter; `<style>` text goes through the CSS
    /// rewriter.
    Raw {
        name: &'static [u8],
        style: bool,
    },
    Script(Script),
    Comment(Comment),
    /// A bogus comment or a DOCTYPE: up to the next `>`.
    Bogus,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Script {
    Data,
    Escaped,
    EscapedDash,
    EscapedDashDash,
    Double,
    DoubleDash,
    DoubleDashDash,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Comment {
    Start,
    StartDash,
    Text,
    EndDash,
    End,
    Bang,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t' | b'\x0C')
}

pub(super) fn is_delim(b: u8) -> bool {
    is_ws(b) || b == b'/' || b == b'>'
}

/// `rest` (from a `<`) starts `</name` + a delimiter, `name` in any case.
pub(super) fn is_end_tag(rest: &[u8], name: &[u8]) -> bool {
    rest.len() > name.len() + 2
        && rest[1] == b'/'
        && rest[2..2 + name.len()].eq_ignore_ascii_case(name)
        && is_delim(rest[2 + name.len()])
}

/// Lookahead a `<` needs in raw text or script data before it can be judged.
pub(super) const SCRIPT_LOOKAHEAD: usize = b"</script>".len();
