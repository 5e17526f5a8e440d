//! Numeric CSV tables (`parse_csv_table` and its column lookups) and the
//! single-column reader `read_column`.
#![no_main]
use libfuzzer_sys::fuzz_target;
use recur::data::{read::parse_csv_table, read_column, Column};

fuzz_target!(|data: &[u8]| {
    let text = recur_fuzz::text(data);
    if let Ok(t) = parse_csv_table(&text, "fuzz") {
        for i in 0..=t.header.len() {
            let _ = t.numeric(i, "fuzz");
        }
        for name in t.header.iter().map(String::as_str).chain(["0", "1", "x"]) {
            let _ = t.column(name, "fuzz");
        }
    }
    let path = recur_fuzz::shm_file("csv", data);
    let first = text.split([',', '\n']).next().unwrap_or("").trim();
    for c in [Column::Last, Column::Index(0), Column::Index(1), Column::parse(first)] {
        let _ = read_column(path, &c);
    }
});
