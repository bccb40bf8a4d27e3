//! An in-memory, columnar table of encounters in schema order. Integers are stored as
//! `Option<i64>`; categories are dictionary-encoded so counting and grouping are cheap.

use std::collections::HashMap;
use std::io::Write;

use super::schema::{self, COLUMNS, Kind, Target, WIDTH};

/// The code of a missing category value.
pub const MISSING: u32 = u32::MAX;

/// A borrowed cell value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Missing,
    Int(i64),
    Str(&'a str),
}

/// Anything that can be read as one encounter by schema index: a table row, an API request.
pub trait Row {
    fn value(&self, col: usize) -> Value<'_>;
}

/// A dictionary-encoded categorical column.
#[derive(Debug, Clone, Default)]
pub struct Categories {
    dict: Vec<String>,
    index: HashMap<String, u32>,
    codes: Vec<u32>,
}

impl Categories {
    /// The code for a value, adding it to the dictionary when new.
    pub fn intern(&mut self, value: &str) -> u32 {
        if let Some(&c) = self.index.get(value) {
            return c;
        }
        let c = self.dict.len() as u32;
        self.dict.push(value.to_owned());
        self.index.insert(value.to_owned(), c);
        c
    }

    /// A column from distinct values and per-row codes into them ([`MISSING`] = missing).
    /// Panics if a code is out of range (a programming error).
    pub fn from_codes(dict: Vec<String>, codes: Vec<u32>) -> Categories {
        assert!(
            codes
                .iter()
                .all(|&c| c == MISSING || (c as usize) < dict.len()),
            "category code out of range"
        );
        let index = dict
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), i as u32))
            .collect();
        Categories { dict, index, codes }
    }

    pub fn push(&mut self, value: Option<&str>) {
        let code = match value {
            Some(v) => self.intern(v),
            None => MISSING,
        };
        self.codes.push(code);
    }

    /// The distinct values seen, indexed by code.
    pub fn dictionary(&self) -> &[String] {
        &self.dict
    }

    pub fn get(&self, row: usize) -> Option<&str> {
        match self.codes[row] {
            MISSING => None,
            c => Some(&self.dict[c as usize]),
        }
    }

    /// Counts per code, plus the missing count.
    pub fn counts(&self) -> (Vec<u64>, u64) {
        let mut counts = vec![0u64; self.dict.len()];
        let mut missing = 0;
        for &c in &self.codes {
            if c == MISSING {
                missing += 1;
            } else {
                counts[c as usize] += 1;
            }
        }
        (counts, missing)
    }
}

/// One column's values.
#[derive(Debug, Clone)]
pub enum Column {
    Int(Vec<Option<i64>>),
    Cat(Categories),
}

impl Column {
    fn empty(kind: Kind) -> Column {
        match kind {
            Kind::Identifier | Kind::Integer => Column::Int(Vec::new()),
            Kind::Categorical => Column::Cat(Categories::default()),
        }
    }

    fn push(&mut self, v: Value<'_>) {
        match (self, v) {
            (Column::Int(xs), Value::Int(i)) => xs.push(Some(i)),
            (Column::Int(xs), Value::Missing) => xs.push(None),
            (Column::Int(xs), Value::Str(s)) => xs.push(s.parse().ok()),
            (Column::Cat(c), Value::Str(s)) => c.push(Some(s)),
            (Column::Cat(c), Value::Missing) => c.push(None),
            (Column::Cat(c), Value::Int(i)) => c.push(Some(&i.to_string())),
        }
    }

    fn get(&self, row: usize) -> Value<'_> {
        match self {
            Column::Int(xs) => xs[row].map_or(Value::Missing, Value::Int),
            Column::Cat(c) => c.get(row).map_or(Value::Missing, Value::Str),
        }
    }
}

/// Encounters in schema order. Columns absent from the source file are all-missing and marked
/// as not present.
#[derive(Debug, Clone)]
pub struct Table {
    columns: Vec<Column>,
    present: [bool; WIDTH],
    rows: usize,
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

impl Table {
    /// An empty table with every column present.
    pub fn new() -> Table {
        Table {
            columns: COLUMNS.iter().map(|c| Column::empty(c.kind)).collect(),
            present: [true; WIDTH],
            rows: 0,
        }
    }

    /// A table from whole columns in schema order. Panics if a column's kind or length disagrees
    /// (a programming error).
    pub fn from_columns(columns: Vec<Column>) -> Table {
        assert_eq!(columns.len(), WIDTH, "one column per schema column");
        let rows = match columns.first() {
            Some(Column::Int(xs)) => xs.len(),
            Some(Column::Cat(c)) => c.codes.len(),
            None => 0,
        };
        for (c, (col, spec)) in columns.iter().zip(COLUMNS.iter()).enumerate() {
            let (len, cat) = match col {
                Column::Int(xs) => (xs.len(), false),
                Column::Cat(k) => (k.codes.len(), true),
            };
            assert!(
                len == rows && cat == (spec.kind == Kind::Categorical),
                "column {c} ({}) has the wrong kind or length",
                spec.name
            );
        }
        Table {
            columns,
            present: [true; WIDTH],
            rows,
        }
    }

    /// Marks which columns the source had.
    pub fn set_present(&mut self, present: [bool; WIDTH]) {
        self.present = present;
    }

    pub fn is_present(&self, col: usize) -> bool {
        self.present[col]
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends a row given as one value per schema column.
    pub fn push_row(&mut self, values: &[Value<'_>]) {
        debug_assert_eq!(values.len(), WIDTH);
        for (c, v) in self.columns.iter_mut().zip(values) {
            c.push(*v);
        }
        self.rows += 1;
    }

    /// Appends a row read from anything row-like.
    pub fn push(&mut self, row: &impl Row) {
        for (i, c) in self.columns.iter_mut().enumerate() {
            c.push(row.value(i));
        }
        self.rows += 1;
    }

    pub fn get(&self, row: usize, col: usize) -> Value<'_> {
        self.columns[col].get(row)
    }

    pub fn column(&self, col: usize) -> &Column {
        &self.columns[col]
    }

    /// An integer column's values. Panics if `col` is categorical (a programming error).
    pub fn ints(&self, col: usize) -> &[Option<i64>] {
        match &self.columns[col] {
            Column::Int(xs) => xs,
            Column::Cat(_) => panic!("column {} is categorical", COLUMNS[col].name),
        }
    }

    /// A categorical column. Panics if `col` is an integer column (a programming error).
    pub fn cats(&self, col: usize) -> &Categories {
        match &self.columns[col] {
            Column::Cat(c) => c,
            Column::Int(_) => panic!("column {} is an integer column", COLUMNS[col].name),
        }
    }

    /// An integer column's values for in-place edits (the length cannot change). Panics if `col`
    /// is categorical (a programming error).
    pub fn ints_mut(&mut self, col: usize) -> &mut [Option<i64>] {
        match &mut self.columns[col] {
            Column::Int(xs) => xs,
            Column::Cat(_) => panic!("column {} is categorical", COLUMNS[col].name),
        }
    }

    /// Replaces one categorical cell (`None` = missing). Panics if `col` is an integer column.
    pub fn set_cat(&mut self, row: usize, col: usize, value: Option<&str>) {
        match &mut self.columns[col] {
            Column::Cat(c) => {
                let code = value.map_or(MISSING, |v| c.intern(v));
                c.codes[row] = code;
            }
            Column::Int(_) => panic!("column {} is an integer column", COLUMNS[col].name),
        }
    }

    /// Writes the table as CSV into memory, or gzip-compressed CSV when `gzip` is set.
    pub fn to_csv_bytes(&self, gzip: bool) -> std::io::Result<Vec<u8>> {
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            self.write_csv(&mut gz)?;
            gz.finish()
        } else {
            let mut buf = Vec::with_capacity(self.rows * 200);
            self.write_csv(&mut buf)?;
            Ok(buf)
        }
    }

    /// A view of one row.
    pub fn row(&self, i: usize) -> TableRow<'_> {
        TableRow {
            table: self,
            row: i,
        }
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Table {
        let mut out = Table::new();
        out.present = self.present;
        let mut buf = Vec::with_capacity(WIDTH);
        for &i in indices {
            buf.clear();
            buf.extend((0..WIDTH).map(|c| self.get(i, c)));
            out.push_row(&buf);
        }
        out
    }

    /// Appends all rows of `other`.
    pub fn extend(&mut self, other: &Table) {
        let mut buf = Vec::with_capacity(WIDTH);
        for i in 0..other.rows {
            buf.clear();
            buf.extend((0..WIDTH).map(|c| other.get(i, c)));
            self.push_row(&buf);
        }
        for (p, q) in self.present.iter_mut().zip(other.present) {
            *p &= q;
        }
    }

    /// Binary labels for `target`; `None` where `readmitted` is missing.
    pub fn labels(&self, target: Target) -> Vec<Option<bool>> {
        let c = self.cats(schema::col::READMITTED);
        (0..self.rows)
            .map(|i| c.get(i).map(|v| target.positive(v)))
            .collect()
    }

    /// Writes the table as CSV in schema order, `?` for missing values.
    pub fn write_csv(&self, w: impl Write) -> std::io::Result<()> {
        let mut out = csv::WriterBuilder::new()
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(w);
        out.write_record(schema::names())?;
        let mut num = String::with_capacity(24);
        for i in 0..self.rows {
            for c in 0..WIDTH {
                match self.get(i, c) {
                    Value::Missing => out.write_field("?")?,
                    Value::Int(v) => {
                        use std::fmt::Write as _;
                        num.clear();
                        let _ = write!(num, "{v}");
                        out.write_field(&num)?;
                    }
                    Value::Str(s) => out.write_field(s)?,
                }
            }
            out.write_record(std::iter::empty::<&[u8]>())?;
        }
        out.flush()?;
        Ok(())
    }
}

/// A borrowed row of a [`Table`].
#[derive(Debug, Clone, Copy)]
pub struct TableRow<'a> {
    table: &'a Table,
    row: usize,
}

impl Row for TableRow<'_> {
    fn value(&self, col: usize) -> Value<'_> {
        self.table.get(self.row, col)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, race: Option<&'static str>) -> Vec<Value<'static>> {
        let mut v = vec![Value::Str("No"); WIDTH];
        for (i, c) in COLUMNS.iter().enumerate() {
            if c.kind != Kind::Categorical {
                v[i] = Value::Int(1);
            }
        }
        v[0] = Value::Int(id);
        v[2] = race.map_or(Value::Missing, Value::Str);
        v
    }

    #[test]
    fn push_select_extend_and_csv() {
        let mut t = Table::new();
        t.push_row(&row(1, Some("Asian")));
        t.push_row(&row(2, None));
        t.push_row(&row(3, Some("Asian")));
        assert_eq!(t.len(), 3);
        assert_eq!(t.cats(2).dictionary(), &["Asian".to_owned()]);
        assert_eq!(t.cats(2).counts(), (vec![2], 1));
        let s = t.select(&[2, 1]);
        assert_eq!(s.get(0, 0), Value::Int(3));
        assert_eq!(s.get(1, 2), Value::Missing);
        let mut u = s.clone();
        u.extend(&t);
        assert_eq!(u.len(), 5);
        let mut buf = Vec::new();
        s.write_csv(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("encounter_id,patient_nbr,race,"));
        assert_eq!(text.lines().count(), 3);
        assert!(text.lines().nth(2).unwrap().starts_with("2,1,?,"));
    }
}
