//! Table output as the Go CLI prints it (go-pretty v6 with a borderless box
//! style): every cell is padded by one space on each side, columns holding
//! only numbers are right-aligned (their header too; with no rows every
//! column counts as numeric), all others left-aligned, trailing padding kept.

/// One cell: its text and whether the Go value was a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    pub text: String,
    pub numeric: bool,
}

impl Cell {
    pub fn text(s: impl Into<String>) -> Self {
        Cell {
            text: s.into(),
            numeric: false,
        }
    }

    pub fn num(n: impl std::fmt::Display) -> Self {
        Cell {
            text: n.to_string(),
            numeric: true,
        }
    }
}

/// Headers and rows; rows may be longer than the header (extra columns get
/// an empty header, as go-pretty does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableData {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl TableData {
    pub fn new(headers: &[&str]) -> Self {
        TableData {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }

    /// The rendered table, newline-terminated.
    pub fn render(&self) -> String {
        let ncols = self
            .rows
            .iter()
            .map(Vec::len)
            .chain([self.headers.len()])
            .max()
            .unwrap_or(0);
        if ncols == 0 {
            return String::new();
        }
        let width = |s: &str| s.chars().count();
        let mut widths = vec![0usize; ncols];
        let mut numeric = vec![true; ncols];
        for (i, h) in self.headers.iter().enumerate() {
            widths[i] = widths[i].max(width(h));
        }
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(width(&c.text));
                numeric[i] &= c.numeric;
            }
        }
        let mut lines = Vec::with_capacity(self.rows.len() + 1);
        let header: Vec<&str> = self.headers.iter().map(String::as_str).collect();
        lines.push(render_line(&header, &widths, &numeric));
        for row in &self.rows {
            let cells: Vec<&str> = row.iter().map(|c| c.text.as_str()).collect();
            lines.push(render_line(&cells, &widths, &numeric));
        }
        let mut out = lines.join("\n");
        out.push('\n');
        out
    }
}

fn render_line(cells: &[&str], widths: &[usize], numeric: &[bool]) -> String {
    let mut line = String::new();
    for (i, w) in widths.iter().enumerate() {
        let text = cells.get(i).copied().unwrap_or("");
        line.push(' ');
        if numeric[i] {
            let t = text.trim_start_matches(' ');
            line.push_str(&format!("{t:>w$}"));
        } else {
            let t = text.trim_end_matches(' ');
            line.push_str(&format!("{t:<w$}"));
        }
        line.push(' ');
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_and_padding() {
        let mut t = TableData::new(&["Prefix", "VNI", "NextHopIP"]);
        t.row(vec![
            Cell::text("10.0.0.0/24"),
            Cell::num(100),
            Cell::text("fc00::1"),
        ]);
        t.row(vec![
            Cell::text("192.168.0.0/16"),
            Cell::num(7),
            Cell::text("fc00::2"),
        ]);
        assert_eq!(
            t.render(),
            " Prefix          VNI  NextHopIP \n 10.0.0.0/24     100  fc00::1   \n 192.168.0.0/16    7  fc00::2   \n"
        );
    }

    #[test]
    fn empty_table_is_header_only_right_aligned() {
        let t = TableData::new(&["ID", "VNI"]);
        assert_eq!(t.render(), " ID  VNI \n");
    }

    #[test]
    fn extra_columns_without_header() {
        let mut t = TableData::new(&["A"]);
        t.row(vec![Cell::text("x"), Cell::text(""), Cell::text("")]);
        assert_eq!(t.render(), " A     \n x     \n");
    }

    #[test]
    fn left_aligned_text_loses_trailing_spaces() {
        let mut t = TableData::new(&["PF Interfaces", "N"]);
        t.row(vec![Cell::text("0 1 "), Cell::num(3)]);
        assert_eq!(t.render(), " PF Interfaces  N \n 0 1            3 \n");
    }
}
