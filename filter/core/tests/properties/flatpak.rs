//! `flatpak::filter_index`: arbitrary bytes never panic; for any index, every kept entry is
//! an input entry whose `Name` passes, in input order, every passing entry is kept, and every
//! other field is unchanged.

use proptest::prelude::*;
use serde_json::{Map, Value};

use registry_gate_core::flatpak::filter_index;

use crate::{config, json_value};

const LIMIT: usize = 1 << 20;

fn passes(name: &str) -> bool {
    name.len() % 2 == 0
}

/// A `Results` entry: mostly objects with a string `Name`, sometimes anything at all.
fn entry() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => ("[a-z/]{0,8}", json_value()).prop_map(|(name, images)| {
            let mut entry = Map::new();
            entry.insert("Name".into(), Value::String(name));
            entry.insert("Images".into(), images);
            Value::Object(entry)
        }),
        1 => json_value(),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = filter_index(&body, LIMIT, passes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json_value()) {
        let body = serde_json::to_vec(&value).unwrap();
        let _ = filter_index(&body, LIMIT, passes);
    }

    #[test]
    fn keeps_exactly_the_passing_entries(
        results in prop::collection::vec(entry(), 0..12),
        extra in json_value(),
    ) {
        let mut index = Map::new();
        index.insert("Registry".into(), Value::String("https://r/".into()));
        index.insert("Extra".into(), extra.clone());
        index.insert("Results".into(), Value::Array(results.clone()));
        let body = serde_json::to_vec(&index).unwrap();
        let out: Value = serde_json::from_slice(&filter_index(&body, LIMIT, passes).unwrap()).unwrap();
        // The input as the filter read it (a float re-read from its text may differ in the
        // last digit from the value it was written from).
        let input: Value = serde_json::from_slice(&body).unwrap();
        let expected: Vec<&Value> = input["Results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e.get("Name").and_then(Value::as_str).is_some_and(passes))
            .collect();
        let kept: Vec<&Value> = out["Results"].as_array().unwrap().iter().collect();
        prop_assert_eq!(kept, expected);
        prop_assert_eq!(&out["Extra"], &input["Extra"]);
        prop_assert_eq!(&out["Registry"], &index["Registry"]);
    }
}
