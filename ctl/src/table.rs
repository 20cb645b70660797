//! Tables as kubectl prints them: upper-case headers, columns separated by at least three
//! spaces, every column (but the last) padded to its widest cell and to at least six
//! characters. This is the layout of Go's `text/tabwriter` with kubectl's settings (min width 6,
//! padding 3), written out here so that every `ctl` table lines up exactly like kubectl's.

use std::io::{self, Write};

/// A table being built row by row.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

/// kubectl's tabwriter settings.
const MIN_WIDTH: usize = 6;
const PADDING: usize = 3;

impl Table {
    pub fn new<S: AsRef<str>>(headers: &[S]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.as_ref().to_string()).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; missing cells print empty, extra cells are kept.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Writes the table, headers first (no header line when there are no headers).
    pub fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(self.render().as_bytes())
    }

    pub fn render(&self) -> String {
        let lines: Vec<&Vec<String>> = std::iter::once(&self.headers)
            .filter(|h| !h.is_empty())
            .chain(self.rows.iter())
            .collect();
        let columns = lines.iter().map(|l| l.len()).max().unwrap_or(0);
        // Width of each column but the last: the last cell of a line is never padded.
        let mut widths = vec![0usize; columns.saturating_sub(1)];
        for line in &lines {
            for (i, cell) in line.iter().enumerate().take(widths.len()) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for width in &mut widths {
            *width = (*width + PADDING).max(MIN_WIDTH);
        }
        let mut out = String::new();
        for line in lines {
            let cells = line.len().max(columns);
            for i in 0..cells {
                let cell = line.get(i).map(String::as_str).unwrap_or("");
                out.push_str(cell);
                if i + 1 < cells {
                    let pad = widths
                        .get(i)
                        .copied()
                        .unwrap_or(0)
                        .saturating_sub(cell.chars().count());
                    out.extend(std::iter::repeat_n(' ', pad));
                }
            }
            // tabwriter keeps trailing cells empty but does not leave trailing blanks.
            let trimmed = out.trim_end_matches(' ').len();
            out.truncate(trimmed);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(headers: &[&str], rows: &[&[&str]], expected: &str) {
        let mut table = Table::new(headers);
        for row in rows {
            table.row(row.iter().copied());
        }
        assert_eq!(table.render(), expected);
    }

    #[test]
    fn lines_up_like_kubectl() {
        check(
            &["NAME", "READY", "STATUS", "AGE"],
            &[
                &["web-1", "1/1", "Running", "5m"],
                &["a-much-longer-name", "0/1", "Pending", "10s"],
            ],
            "NAME                 READY   STATUS    AGE\n\
             web-1                1/1     Running   5m\n\
             a-much-longer-name   0/1     Pending   10s\n",
        );
        // Narrow columns still take six characters, as kubectl's minwidth makes them.
        check(
            &["ID", "ROLE"],
            &[&["1", "leader"]],
            "ID    ROLE\n1     leader\n",
        );
        // Wide characters count once; empty last cells leave no trailing spaces.
        check(
            &["A", "B", "C"],
            &[&["é", "x", ""]],
            "A     B     C\né     x\n",
        );
        check(&[], &[&["x", "y"]], "x     y\n");
        check(&["ONLY"], &[], "ONLY\n");
    }
}
