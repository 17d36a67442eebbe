//! Delimited values (RFC 4180 quoting) as a Markdown table: the header row, a separator, then
//! one line per row. Cells are written as they end, so memory holds one cell, never the rows.

use super::budget::{Budget, Stop};
use super::capped::Capped;

/// Writes `text` as a Markdown table into `out`.
pub fn csv_table(
    text: &str,
    delim: char,
    out: &mut Capped,
    budget: &mut Budget,
) -> Result<(), Stop> {
    let mut table = Table {
        out,
        cells: 0,
        rows: 0,
    };
    let mut cell = String::new();
    let mut quoted = false;
    let mut any = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        budget.spend(1)?;
        any = true;
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    cell.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            } else {
                cell.push(c);
            }
        } else if c == '"' && cell.is_empty() {
            quoted = true;
        } else if c == delim {
            table.cell(&cell, false)?;
            cell.clear();
        } else if c == '\n' || c == '\r' {
            if c == '\r' && chars.peek() == Some(&'\n') {
                chars.next();
            }
            table.cell(&cell, true)?;
            cell.clear();
            table.end_row()?;
            any = false;
        } else {
            cell.push(c);
        }
    }
    if any {
        table.cell(&cell, false)?;
        table.end_row()?;
    }
    Ok(())
}

/// The table being written.
struct Table<'o> {
    out: &'o mut Capped,
    /// Cells written in the current row.
    cells: usize,
    /// Rows written.
    rows: usize,
}

impl Table<'_> {
    /// Writes a finished cell; a line holding one empty cell (`at_newline`) is skipped.
    fn cell(&mut self, cell: &str, at_newline: bool) -> Result<(), Stop> {
        if self.cells == 0 {
            if at_newline && cell.is_empty() {
                return Ok(());
            }
            self.out.push_str("| ")?;
        } else {
            self.out.push_str(" | ")?;
        }
        self.cells += 1;
        let cell = cell.trim_matches(|c: char| c.is_whitespace());
        for c in cell.chars() {
            match c {
                '\\' => self.out.push_str("\\\\")?,
                '|' => self.out.push_str("\\|")?,
                '\r' | '\n' => self.out.push(' ')?,
                c => self.out.push(c)?,
            }
        }
        Ok(())
    }

    /// Ends the current row (nothing when it was skipped); the header is followed by the
    /// separator line.
    fn end_row(&mut self) -> Result<(), Stop> {
        if self.cells == 0 {
            return Ok(());
        }
        self.out.push_str(" |\n")?;
        if self.rows == 0 {
            self.out.push('|')?;
            for _ in 0..self.cells.max(1) {
                self.out.push_str(" --- |")?;
            }
            self.out.push('\n')?;
        }
        self.rows += 1;
        self.cells = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str, delim: char) -> String {
        let mut out = Capped::new(1 << 20);
        csv_table(text, delim, &mut out, &mut Budget::unlimited()).unwrap();
        out.finish().0
    }

    #[test]
    fn markdown_tables() {
        assert_eq!(
            table(
                "name,note\r\nAnn,\"hi, \"\"you\"\"\"\nBo,\"two\nlines\"\n\n",
                ','
            ),
            "| name | note |\n| --- | --- |\n| Ann | hi, \"you\" |\n| Bo | two lines |\n"
        );
        assert_eq!(table("a|b", ','), "| a\\|b |\n| --- |\n");
        assert_eq!(
            table("a\tb\n1\t2", '\t'),
            "| a | b |\n| --- | --- |\n| 1 | 2 |\n"
        );
        assert_eq!(table("", ','), "");
        assert_eq!(table("\n\n\"\"\n", ','), "");
        assert_eq!(table("a\n\"\"", ','), "| a |\n| --- |\n|  |\n");
        assert_eq!(
            table(" x\\ , \"q\"r \n", ','),
            "| x\\\\ | \"q\"r |\n| --- | --- |\n"
        );
    }

    #[test]
    fn a_row_of_commas_stops_at_the_cap() {
        let commas = ",".repeat(4_000_000);
        let mut out = Capped::new(1000);
        let mut budget = Budget::unlimited();
        assert_eq!(
            csv_table(&commas, ',', &mut out, &mut budget),
            Err(Stop::Full)
        );
        assert!(budget.steps() < 1000, "{}", budget.steps());
        assert_eq!(out.finish().0.len(), 1000);
    }
}
