//! One numeric column of a CSV file (comma-separated, optional header row).

use std::path::Path;

use crate::error::{Error, Result};

/// Which column to read.
#[derive(Clone, Debug, PartialEq)]
pub enum Column {
    /// By header name.
    Name(String),
    /// By 0-based index.
    Index(usize),
    /// The last column.
    Last,
}

impl Column {
    /// A name, or an index when the text is a number.
    pub fn parse(s: &str) -> Column {
        s.parse()
            .map(Column::Index)
            .unwrap_or_else(|_| Column::Name(s.to_string()))
    }
}

/// Reads one column as f64. The first row is a header when any of its cells
/// is not a number. Errors name the file, the line and the cell.
pub fn read_column(path: &Path, column: &Column) -> Result<(String, Vec<f64>)> {
    let err = |m: String| Error::Input {
        line: None,
        field: None,
        path: path.display().to_string(),
        message: m,
    };
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .peekable();
    let first = lines
        .peek()
        .map(|(_, l)| {
            l.split(',')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .ok_or_else(|| err("the file is empty".into()))?;
    let header = first.iter().any(|c| c.parse::<f64>().is_err());
    let names: Vec<String> = if header {
        first.clone()
    } else {
        (0..first.len()).map(|i| format!("column {i}")).collect()
    };
    if header {
        lines.next();
    }
    let idx = match column {
        Column::Index(i) if *i < names.len() => *i,
        Column::Index(i) => {
            return Err(err(format!(
                "column {i} does not exist: the file has {} columns ({})",
                names.len(),
                names.join(", ")
            )))
        }
        Column::Name(n) => names.iter().position(|h| h == n).ok_or_else(|| {
            err(format!(
                "no column named '{n}': {}",
                if header {
                    format!("the header has {}", names.join(", "))
                } else {
                    "the file has no header row".into()
                }
            ))
        })?,
        Column::Last => names.len() - 1,
    };
    let mut values = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let cell = cells.get(idx).map(|c| c.trim()).ok_or_else(|| {
            err(format!(
                "line {}: has {} cells, expected at least {}",
                i + 1,
                cells.len(),
                idx + 1
            ))
        })?;
        let v: f64 = cell.parse().map_err(|_| {
            err(format!(
                "line {}: '{cell}' in column '{}' is not a number",
                i + 1,
                names[idx]
            ))
        })?;
        if !v.is_finite() {
            return Err(err(format!(
                "line {}: '{cell}' in column '{}' is not a finite number",
                i + 1,
                names[idx]
            )));
        }
        values.push(v);
    }
    Ok((names[idx].clone(), values))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile_path::Tmp {
        tempfile_path::Tmp::new(text)
    }

    mod tempfile_path {
        pub struct Tmp(pub std::path::PathBuf);
        impl Tmp {
            pub fn new(text: &str) -> Tmp {
                static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "recur-csv-{}-{}.csv",
                    std::process::id(),
                    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                std::fs::write(&p, text).unwrap();
                Tmp(p)
            }
        }
        impl Drop for Tmp {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }

    #[test]
    fn header_names_and_indices() {
        let f = file("t,x\n0,1.5\n1,2.5\n");
        assert_eq!(
            read_column(&f.0, &Column::Name("x".into())).unwrap().1,
            [1.5, 2.5]
        );
        assert_eq!(read_column(&f.0, &Column::Index(0)).unwrap().1, [0.0, 1.0]);
        assert_eq!(read_column(&f.0, &Column::Last).unwrap().0, "x");
        let g = file("1\n2\n3\n");
        assert_eq!(read_column(&g.0, &Column::Last).unwrap().1, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn errors_name_line_and_column() {
        let f = file("t,x\n0,1.5\n1,abc\n");
        let e = read_column(&f.0, &Column::Name("x".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("'abc'") && e.contains("'x'"),
            "{e}"
        );
        let e = read_column(&f.0, &Column::Name("y".into()))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no column named 'y'") && e.contains("t, x"),
            "{e}"
        );
    }
}
