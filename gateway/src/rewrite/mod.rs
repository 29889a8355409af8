//! Rewriting of device responses for a session prefix: URLs ([`Scope`]), headers
//! (`Location`, `Refresh`, `Set-Cookie`), CSS and HTML, all streaming.
//!
//! Only what belongs to the device is rewritten: root-relative URLs and absolute URLs
//! naming the device's own address. Relative URLs, fragments, other hosts, `javascript:`
//! and `data:` URLs are left alone. Must never: buffer a body whole, or rewrite a URL
//! that already carries this session's prefix a second time.

mod body;
mod css;
mod css_url;
mod entities;
mod headers;
mod html;
mod html_element;
mod html_fast;
mod html_fast_state;
mod html_fast_tag;
mod request;
mod response;
mod scope;

pub use body::{rewrite_body, READ_CHUNK};
pub use css::CssRewriter;
pub use headers::{
    device_cookies, refresh, reserved_cookie, service_worker_allowed, set_cookie,
    DEVICE_COOKIE_PREFIX,
};
pub use html::{inject_script, shim_script, HtmlRewriteError, HtmlRewriter};
pub(crate) use request::drop_hop_by_hop;
pub use request::{device_request_headers, ACCEPT_ENCODING};
pub use response::{rewrite_response_headers, BodyPlan, Coding};
pub use scope::Scope;

#[cfg(test)]
mod html_reference;
#[cfg(test)]
mod tests;
