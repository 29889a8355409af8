//! HTTP headers as carried on the wire: a JSON object whose values are a string or an
//! array of strings, so repeated headers such as `set-cookie` survive the trip.

use crate::limits;
use serde::de::{Error as _, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// One header's value(s) as they appear in JSON: a string, or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum HeaderValue {
    One(String),
    Many(Vec<String>),
}

/// What one decoded header costs beyond its bytes, for the decoder's budget: the entry
/// and the name's own allocation.
const ENTRY_COST: usize = 64;

/// By hand, not `untagged`: serde buffers an untagged value into its `Content` first (an
/// allocation and a copy for every header of every frame) to try each variant in turn.
impl<'de> Deserialize<'de> for HeaderValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HeaderValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_str<E>(self, v: &str) -> Result<HeaderValue, E> {
                Ok(HeaderValue::One(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<HeaderValue, E> {
                Ok(HeaderValue::One(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HeaderValue, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(16));
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                Ok(HeaderValue::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Ordered header list; names keep the case they were given, lookups ignore case.
/// Names that repeat are merged into one JSON entry with an array value on encode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a value; an existing header of the same name is kept (repeated header).
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Replaces every value of `name` with `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        self.remove(&name);
        self.0.push((name, value.into()));
    }

    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// First value of `name`, case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn retain(&mut self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.0.retain(|(n, v)| keep(n, v));
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Total bytes of names and values, checked against `MAX_HEADER_BYTES`.
    pub fn byte_len(&self) -> usize {
        self.0.iter().map(|(n, v)| n.len() + v.len()).sum()
    }
}

impl FromIterator<(String, String)> for Headers {
    fn from_iter<T: IntoIterator<Item = (String, String)>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Group repeated names (case-insensitively) into one entry, first spelling wins.
        let mut groups: Vec<(&str, Vec<&str>)> = Vec::with_capacity(self.0.len());
        for (n, v) in &self.0 {
            match groups.iter_mut().find(|(g, _)| g.eq_ignore_ascii_case(n)) {
                Some((_, vs)) => vs.push(v),
                None => groups.push((n, vec![v])),
            }
        }
        let mut map = s.serialize_map(Some(groups.len()))?;
        for (n, vs) in groups {
            if let [one] = vs.as_slice() {
                map.serialize_entry(n, one)?;
            } else {
                map.serialize_entry(n, &vs)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Headers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Headers;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of header name to string or array of strings")
            }
            fn visit_unit<E>(self) -> Result<Headers, E> {
                Ok(Headers::new())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Headers, A::Error> {
                let mut out = Headers::new();
                // Each value of an array gets its own copy of the name: a 512 KiB name
                // with 170,000 empty values fits in one frame and would ask for 90 GB.
                // What an honest frame holds fits in the frame; past that (each entry
                // also charged for its own bookkeeping), this is refused.
                let mut budget = limits::MAX_FRAME_LEN;
                let mut charge = |n: &str, v: &str| -> Result<(), A::Error> {
                    budget = budget
                        .checked_sub(n.len() + v.len() + ENTRY_COST)
                        .ok_or_else(|| {
                            A::Error::custom("headers decode to more than a frame holds")
                        })?;
                    Ok(())
                };
                while let Some((k, v)) = m.next_entry::<String, HeaderValue>()? {
                    match v {
                        HeaderValue::One(s) => {
                            charge(&k, &s)?;
                            out.append(k, s);
                        }
                        HeaderValue::Many(vs) => {
                            for s in vs {
                                charge(&k, &s)?;
                                out.append(k.clone(), s);
                            }
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_round_trip_as_array() {
        let mut h = Headers::new();
        h.append("content-type", "text/html");
        h.append("set-cookie", "a=1; Path=/");
        h.append("Set-Cookie", "b=2");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(
            json,
            r#"{"content-type":"text/html","set-cookie":["a=1; Path=/","b=2"]}"#
        );
        let back: Headers = serde_json::from_str(&json).unwrap();
        assert_eq!(
            back.get_all("set-cookie").collect::<Vec<_>>(),
            ["a=1; Path=/", "b=2"]
        );
        assert_eq!(back.get("CONTENT-TYPE"), Some("text/html"));
    }

    /// Found in review: each value of an array copies the name, so a frame-sized input
    /// could decode to gigabytes. Refused once it passes what a frame holds.
    #[test]
    fn a_repeated_long_name_cannot_multiply_past_a_frame() {
        let name = "n".repeat(512 * 1024);
        let values = vec![""; 3000];
        let json = format!("{{\"{name}\":{}}}", serde_json::to_string(&values).unwrap());
        assert!(json.len() < limits::MAX_FRAME_LEN);
        let err = serde_json::from_str::<Headers>(&json).unwrap_err();
        assert!(err.to_string().contains("more than a frame holds"), "{err}");
        // Many small headers, as an honest frame may carry, still decode.
        let many: serde_json::Map<String, serde_json::Value> = (0..2000)
            .map(|i| (format!("x-h{i}"), serde_json::Value::from("v".repeat(100))))
            .collect();
        let h: Headers = serde_json::from_value(serde_json::Value::Object(many)).unwrap();
        assert_eq!(h.len(), 2000);
    }

    #[test]
    fn null_headers_are_empty_and_numbers_are_rejected() {
        assert!(serde_json::from_str::<Headers>("null").unwrap().is_empty());
        assert!(serde_json::from_str::<Headers>(r#"{"a":1}"#).is_err());
        assert!(serde_json::from_str::<Headers>(r#"{"a":["x",1]}"#).is_err());
        assert!(serde_json::from_str::<Headers>(r#"{"a":{"b":"c"}}"#).is_err());
        let h = serde_json::from_str::<Headers>(r#"{"a":[],"b":"\u00e9"}"#).unwrap();
        assert_eq!(h.get("a"), None);
        assert_eq!(h.get("b"), Some("\u{e9}"));
    }
}
