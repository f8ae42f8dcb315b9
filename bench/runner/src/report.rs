//! Turning runs into the table: per-configuration medians with their min–max over rounds,
//! paired per-round ratios, and the Markdown both stdout and `bench/results/latest.md` get.
//!
//! It must never compare figures from different rounds as a pair: a ratio is taken within
//! one round (where the same machine noise hit both configurations), then summarised.

/// Median and range of one figure over the rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Spread {
    /// `None` for no values. NaN sorts last and is never produced by the runner.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let min = *sorted.first()?;
        let max = *sorted.last()?;
        let median = if n % 2 == 1 {
            *sorted.get(n / 2)?
        } else {
            (sorted.get(n / 2 - 1)? + sorted.get(n / 2)?) / 2.0
        };
        Some(Spread { median, min, max })
    }

    /// `median (min–max)` with `decimals` decimals.
    pub fn cell(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

/// A spread's cell, or `fallback` when there is none.
pub fn cell(spread: Option<Spread>, decimals: usize, fallback: &str) -> String {
    spread.map_or_else(|| fallback.to_owned(), |s| s.cell(decimals))
}

/// A Markdown table from a header row and body rows.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", header.join(" | "));
    out.push_str(&format!(
        "|{}\n",
        header.iter().map(|_| "---|").collect::<String>()
    ));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!(
            odd,
            Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            }
        );
        let even = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert_eq!(Spread::of(&[7.0]).unwrap().median, 7.0);
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn cells_and_table() {
        let s = Spread::of(&[0.5, 0.75, 1.0]).unwrap();
        assert_eq!(s.cell(2), "0.75 (0.50–1.00)");
        assert_eq!(cell(None, 2, "n/a"), "n/a");
        let table = markdown_table(&["a", "b"], &[vec!["1".to_owned(), "2".to_owned()]]);
        assert_eq!(table, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }
}
