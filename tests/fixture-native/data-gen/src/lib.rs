include!(concat!(env!("OUT_DIR"), "/table.rs"));

/// `name:value` pairs of data/table.txt, comma-separated.
pub fn table() -> String {
    TABLE
        .iter()
        .map(|(n, v)| format!("{n}:{v}"))
        .collect::<Vec<_>>()
        .join(",")
}
