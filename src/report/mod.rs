//! Rendering results for people: generic Markdown building blocks (escaped tables, numbers,
//! size-limited documents). It knows nothing about where the Markdown goes (job summary, PR
//! comment, check run); callers pass the limit of their destination.
//!
//! Every limit here is in bytes of UTF-8, and trimming never splits a character or leaves a
//! code fence open.

pub mod charts;
pub mod history;
pub mod site;

use std::fmt::Write as _;

/// Escapes text for a Markdown table cell: pipes, newlines and HTML-significant characters.
pub fn escape_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '\n' => out.push_str("<br>"),
            '\r' => {}
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            c => out.push(c),
        }
    }
    out
}

/// Column alignment in a Markdown table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown table: headers, alignment and rows of cells (escaped when rendered).
#[derive(Debug, Clone, Default)]
pub struct Table {
    headers: Vec<(String, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with left-aligned columns.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers
                .iter()
                .map(|h| ((*h).to_owned(), Align::Left))
                .collect(),
            rows: Vec::new(),
        }
    }

    /// Sets a column's alignment (numbers read best right-aligned).
    pub fn align(mut self, column: usize, align: Align) -> Table {
        if let Some(h) = self.headers.get_mut(column) {
            h.1 = align;
        }
        self
    }

    /// Adds a row; missing cells are blank and extra cells are dropped.
    pub fn row<S: AsRef<str>>(&mut self, cells: &[S]) {
        let mut row: Vec<String> = cells.iter().map(|c| c.as_ref().to_owned()).collect();
        row.resize(self.headers.len(), String::new());
        self.rows.push(row);
    }

    /// The table as GitHub-flavoured Markdown, ending with a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push('|');
        for (h, _) in &self.headers {
            let _ = write!(out, " {} |", escape_cell(h));
        }
        out.push_str("\n|");
        for (_, a) in &self.headers {
            out.push_str(match a {
                Align::Left => " --- |",
                Align::Right => " ---: |",
            });
        }
        out.push('\n');
        for row in &self.rows {
            out.push('|');
            for cell in row {
                let _ = write!(out, " {} |", escape_cell(cell));
            }
            out.push('\n');
        }
        out
    }
}

/// A number for people: up to `digits` decimals, trailing zeros removed, `n/a` for NaN.
pub fn number(value: f64, digits: usize) -> String {
    if value.is_nan() {
        return "n/a".into();
    }
    let s = format!("{value:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// A signed difference for people (`+0.012`, `-0.3`, `0`).
pub fn delta(value: f64, digits: usize) -> String {
    let s = number(value, digits);
    if value > 0.0 && s != "0" {
        format!("+{s}")
    } else {
        s
    }
}

/// A ratio as a percentage (`0.273` -> `27.3%`).
pub fn percent(ratio: f64) -> String {
    format!("{}%", number(ratio * 100.0, 1))
}

/// A fenced code block whose fence cannot be closed by the content.
pub fn code_block(lang: &str, content: &str) -> String {
    let longest = longest_backtick_run(content);
    let fence = "`".repeat(longest.max(2) + 1);
    let body = content.trim_end_matches('\n');
    format!("{fence}{lang}\n{body}\n{fence}\n")
}

fn longest_backtick_run(s: &str) -> usize {
    let (mut best, mut run) = (0, 0);
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

/// A collapsible `<details>` section (GitHub renders the Markdown inside it).
pub fn details(summary: &str, body: &str) -> String {
    format!(
        "<details><summary>{}</summary>\n\n{}\n</details>\n\n",
        escape_cell(summary),
        body.trim_end()
    )
}

/// The result of fitting a document into a size limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fitted {
    /// The document, at most `limit` bytes, ending with the trim note when trimmed.
    pub text: String,
    /// Bytes of the original left out (0 when it fitted).
    pub dropped_bytes: usize,
}

impl Fitted {
    pub fn trimmed(&self) -> bool {
        self.dropped_bytes > 0
    }
}

/// Fits Markdown into `limit` bytes. When it does not fit, it is cut at the last line break that
/// leaves room for a note (an open code fence is closed first) and the note says how much was
/// left out and where the full text is (`full_at`, e.g. a file path or check-run URL).
pub fn fit(markdown: &str, limit: usize, full_at: Option<&str>) -> Fitted {
    if markdown.len() <= limit {
        return Fitted {
            text: markdown.to_owned(),
            dropped_bytes: 0,
        };
    }
    // A note long enough for any byte count; computed once with the worst case.
    let note_for = |dropped: usize| {
        let whole = match full_at {
            Some(at) => format!(" The full report is in {at}."),
            None => String::new(),
        };
        format!(
            "\n\n> [!NOTE]\n> Trimmed: {dropped} bytes left out to stay within the {limit}-byte limit.{whole}\n"
        )
    };
    let reserve = note_for(usize::MAX).len() + 8; // + a closing fence
    let budget = limit.saturating_sub(reserve);
    let mut cut = floor_char_boundary(markdown, budget);
    if let Some(nl) = markdown[..cut].rfind('\n') {
        cut = nl + 1;
    }
    let mut text = markdown[..cut].to_owned();
    if open_fence(&text) {
        text.push_str("```\n");
    }
    let dropped = markdown.len() - cut;
    text.push_str(&note_for(dropped));
    if text.len() > limit {
        // Only when limit is smaller than the note itself: a plain, honest cut.
        let end = floor_char_boundary(&text, limit);
        text.truncate(end);
    }
    Fitted {
        text,
        dropped_bytes: dropped,
    }
}

fn floor_char_boundary(s: &str, mut index: usize) -> usize {
    if index >= s.len() {
        return s.len();
    }
    while !s.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// Whether a fenced code block (``` or ~~~ at the start of a line) is still open at the end.
fn open_fence(text: &str) -> bool {
    let mut open: Option<String> = None;
    for line in text.lines() {
        let t = line.trim_start();
        let fence: String = t.chars().take_while(|c| *c == '`' || *c == '~').collect();
        if fence.len() < 3 {
            continue;
        }
        match &open {
            None => open = Some(fence),
            Some(o) if fence.starts_with(o.as_str()) && t.trim() == fence => open = None,
            Some(_) => {}
        }
    }
    open.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_escaped() {
        assert_eq!(escape_cell("a|b\nc<d>&"), "a\\|b<br>c&lt;d&gt;&amp;");
    }

    #[test]
    fn table_renders_alignment_and_pads_rows() {
        let mut t = Table::new(&["name", "value"]).align(1, Align::Right);
        t.row(&["x|y", "1"]);
        t.row(&["z"]);
        assert_eq!(
            t.render(),
            "| name | value |\n| --- | ---: |\n| x\\|y | 1 |\n| z |  |\n"
        );
    }

    #[test]
    fn numbers_trim_zeros() {
        assert_eq!(number(0.5, 3), "0.5");
        assert_eq!(number(2.0, 3), "2");
        assert_eq!(number(f64::NAN, 3), "n/a");
        assert_eq!(delta(0.0123, 3), "+0.012");
        assert_eq!(delta(-0.3, 3), "-0.3");
        assert_eq!(delta(0.00001, 3), "0");
        assert_eq!(percent(0.273), "27.3%");
    }

    #[test]
    fn code_block_fence_outlasts_content() {
        let b = code_block("", "has ``` inside");
        assert!(b.starts_with("````\n"), "{b}");
        assert!(b.ends_with("\n````\n"), "{b}");
    }

    #[test]
    fn fit_keeps_small_documents() {
        let f = fit("# hi\n", 100, None);
        assert_eq!(f.text, "# hi\n");
        assert!(!f.trimmed());
    }

    #[test]
    fn fit_cuts_at_a_line_closes_fences_and_says_so() {
        let mut doc = String::from("# Report\n```\n");
        for i in 0..2000 {
            doc.push_str(&format!("line {i} é\n"));
        }
        doc.push_str("```\n");
        let f = fit(&doc, 4096, Some("run/summary.md"));
        assert!(f.text.len() <= 4096, "{}", f.text.len());
        assert!(f.trimmed());
        assert_eq!(
            f.dropped_bytes + f.text.find("```\n\n\n> [!NOTE]").unwrap(),
            doc.len()
        );
        assert!(f.text.contains("bytes left out"));
        assert!(f.text.contains("run/summary.md"));
        assert!(!open_fence(&f.text), "fence left open");
    }

    #[test]
    fn fit_never_exceeds_a_tiny_limit() {
        let f = fit(&"é".repeat(100), 11, None);
        assert!(f.text.len() <= 11);
        assert!(f.trimmed());
    }
}
