//! Plain-text output: aligned tables, `key: value` blocks, times and values.

use chrono::{DateTime, Local, Utc};
use serde_json::Value;

/// Widest a table cell gets before it is cut with `…`.
const MAX_CELL: usize = 60;

/// A table with a header row, printed with aligned columns.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these column headers.
    pub fn new(headers: &[&'static str]) -> Table {
        Table {
            headers: headers.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (missing cells are blank).
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, columns separated by two spaces.
    pub fn render(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|row| {
                (0..self.headers.len())
                    .map(|i| cut(row.get(i).map(String::as_str).unwrap_or(""), MAX_CELL))
                    .collect()
            })
            .collect();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &cells {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let line = |row: Vec<&str>| {
            let last = row.len().saturating_sub(1);
            let mut out = String::new();
            for (i, cell) in row.into_iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    out.extend(std::iter::repeat_n(' ', widths[i] - cell.chars().count() + 2));
                }
            }
            out.trim_end().to_string()
        };
        let mut out = line(self.headers.clone());
        out.push('\n');
        for row in &cells {
            out.push_str(&line(row.iter().map(String::as_str).collect()));
            out.push('\n');
        }
        out
    }

    /// Prints it.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// Prints `key: value` lines with the values aligned (blank values are skipped).
pub fn print_fields(fields: &[(&str, String)]) {
    let width = fields.iter().map(|(k, _)| k.chars().count()).max().unwrap_or(0) + 1;
    for (key, value) in fields {
        if value.is_empty() {
            continue;
        }
        let label = format!("{key}:");
        let mut lines = value.lines();
        println!("{label:<width$}  {}", lines.next().unwrap_or(""));
        for rest in lines {
            println!("{:<width$}  {rest}", "");
        }
    }
}

/// Cuts `text` to `max` characters (its first line only), ending with `…` if cut.
pub fn cut(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or("");
    let cut_lines = first.len() < text.trim_end().len();
    if first.chars().count() <= max && !cut_lines {
        return first.to_string();
    }
    let mut out: String = first.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A time in the local zone, to the second.
pub fn time(at: &DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// An optional time, or blank.
pub fn opt_time(at: &Option<DateTime<Utc>>) -> String {
    at.as_ref().map(time).unwrap_or_default()
}

/// A JSON value in a cell: strings bare, everything else as compact JSON.
pub fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A JSON value in a cell, or `-` for null.
pub fn or_dash(value: &Value) -> String {
    if value.is_null() { "-".into() } else { scalar(value) }
}

/// A JSON value as an indented block.
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A duration as a person reads it: `850ms`, `4.2s`, `3m05s`, `2h07m`.
pub fn elapsed(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

/// A list, or `-` when empty.
pub fn list(items: &[String]) -> String {
    if items.is_empty() { "-".into() } else { items.join(",") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_their_columns() {
        let mut table = Table::new(&["ID", "STATE"]);
        table.row(vec!["a".into(), "running".into()]);
        table.row(vec!["longer-id".into(), "done".into()]);
        assert_eq!(
            table.render(),
            "ID         STATE\na          running\nlonger-id  done\n"
        );
    }

    #[test]
    fn long_cells_are_cut() {
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("one\ntwo", 10), "one…");
        assert_eq!(cut("short", 10), "short");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(elapsed(850), "850ms");
        assert_eq!(elapsed(4200), "4.2s");
        assert_eq!(elapsed(185_000), "3m05s");
        assert_eq!(elapsed(7_620_000), "2h07m");
    }
}
