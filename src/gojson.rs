//! JSON as Go's `encoding/json` reads it. containerd, the kubelet, cosign and notation-go decode
//! outside JSON into structs, matching object keys to fields case-insensitively (Unicode simple
//! folding) with the last match winning, so `{"User":"1000","user":"0"}` runs as uid 0 while a
//! case-sensitive reader sees 1000. umpire refuses such documents rather than guess: no object may
//! hold two keys Go would fold together (exact duplicates included). Objects that Go decodes into
//! maps (labels, annotations, ports, volumes) keep their keys exactly, so only exact duplicates
//! are refused there. Pure.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Fields that Go decodes into `map[string]...`: their keys are data, matched exactly.
const MAP_FIELDS: &[&str] = &["LABELS", "ANNOTATIONS", "EXPOSEDPORTS", "VOLUMES"];

/// Why a document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GoJsonError(String);

/// A key as Go's `encoding/json` compares it (`foldName`): ASCII upper-cased, other characters
/// through `ToUpper(ToLower(r))` (so `ſ` is `S` and the Kelvin sign is `K`).
pub fn fold(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii() {
                return c.to_ascii_uppercase();
            }
            // Go maps one rune to one rune; Rust's full mappings may expand, so take the simple
            // case (the first rune) and keep the rune when upper-casing would expand it.
            let lower = c.to_lowercase().next().unwrap_or(c);
            let mut upper = lower.to_uppercase();
            match (upper.next(), upper.next()) {
                (Some(u), None) => u,
                _ => lower,
            }
        })
        .collect()
}

/// Checks that `bytes` is JSON whose objects hold no keys that Go would read as one.
pub fn check(bytes: &[u8]) -> Result<(), GoJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    Walk { map_field: false }
        .deserialize(&mut de)
        .map_err(|e| GoJsonError(e.to_string()))?;
    de.end().map_err(|e| GoJsonError(e.to_string()))
}

/// Parses `bytes` as `T` after [`check`]: what serde reads is what a Go consumer reads.
pub fn from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, GoJsonError> {
    check(bytes)?;
    serde_json::from_slice(bytes).map_err(|e| GoJsonError(e.to_string()))
}

/// The member of `object` whose key Go would match to `field` (at most one, after [`check`]).
pub fn get<'a>(object: &'a serde_json::Value, field: &str) -> Option<&'a serde_json::Value> {
    let object = object.as_object()?;
    if let Some(v) = object.get(field) {
        return Some(v);
    }
    let want = fold(field);
    object.iter().find(|(k, _)| fold(k) == want).map(|(_, v)| v)
}

/// Walks one JSON value; `map_field` says the value is an object Go decodes into a map.
struct Walk {
    map_field: bool,
}

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk { map_field: false })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen: Vec<(String, String)> = Vec::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let folded = fold(&key);
            let clash = seen.iter().find(|(raw, f)| {
                if self.map_field {
                    *raw == *key
                } else {
                    *f == folded
                }
            });
            if let Some((other, _)) = clash {
                return Err(de::Error::custom(format!(
                    "object keys {other:?} and {:?} are one field to Go's encoding/json (case-insensitive, last wins: what containerd, the kubelet and cosign read); refusing an ambiguous document",
                    key.as_ref()
                )));
            }
            let map_field = MAP_FIELDS.contains(&folded.as_str());
            seen.push((key.into_owned(), folded));
            map.next_value_seed(Walk { map_field })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_go_reads_as_one_are_refused() {
        for doc in [
            r#"{"config":{"User":"1000","user":"0"}}"#,
            r#"{"config":{"User":"1000"},"Config":{"User":"0"}}"#,
            r#"{"a":1,"a":2}"#,
            "{\"key\":1,\"\u{212A}ey\":2}",
            "{\"s\":1,\"\u{17F}\":2}",
            r#"[{"x":{"Type":"a","TYPE":"b"}}]"#,
        ] {
            assert!(check(doc.as_bytes()).is_err(), "{doc}");
        }
    }

    #[test]
    fn distinct_keys_and_map_keys_pass() {
        for doc in [
            r#"{"config":{"User":"1000","Labels":{"a":"1","A":"2"}},"created":"x"}"#,
            r#"{"annotations":{"org.x":"1","ORG.X":"2"}}"#,
            r#"[1,"two",null,true,{"k":[{"k":1}]}]"#,
        ] {
            check(doc.as_bytes()).unwrap();
        }
        assert!(check(br#"{"Labels":{"a":"1","a":"2"}}"#).is_err());
        assert!(check(b"{} trailing").is_err());
    }

    #[test]
    fn get_matches_as_go_does() {
        let v: serde_json::Value = serde_json::from_str(r#"{"uSeR":"7"}"#).unwrap();
        assert_eq!(get(&v, "User").and_then(|u| u.as_str()), Some("7"));
        assert!(get(&v, "Group").is_none());
    }
}
