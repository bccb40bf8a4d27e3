//! One encounter as the API receives it: the input fields, their validation with field-level
//! errors, and the JSON Schema published in `/openapi.json`.
//!
//! The fields are those of the upstream FastAPI service (`InferenceInput`): the 50 columns of the
//! UCI file minus `encounter_id`, `patient_nbr`, `readmitted` and the three columns the upstream's
//! `clean_data` dropped (`weight`, `payer_code`, `medical_specialty`): 44 fields. Those three are
//! accepted as optional extras (a model trained here may use them); absent, they are missing.
//! Hyphenated dataset names (`glyburide-metformin`) and the upstream's underscored names
//! (`glyburide_metformin`) are both accepted; the schema lists the underscored form.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::data::schema::{COLUMNS, ColumnSpec, Kind, WIDTH, col};
use crate::data::{Row, Value};

/// The longest string accepted in a categorical field.
pub const MAX_TEXT: usize = 100;
/// The largest integer accepted in a count or code field.
pub const MAX_INT: i64 = u32::MAX as i64;

/// One problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FieldError {
    /// The field, as a path into the request (`age`, `encounters[2].age`, `explain`).
    pub field: String,
    /// What is wrong with the value that was sent.
    pub problem: String,
    /// What the field accepts.
    pub expected: String,
}

/// Longest field path an error repeats back (a hostile key can be a megabyte long).
const MAX_SHOWN_FIELD: usize = 100;

/// Field errors of one request: the first `cap` kept, all counted, so an error response stays
/// small however many problems a body holds.
#[derive(Debug)]
pub struct Problems {
    shown: Vec<FieldError>,
    total: usize,
    cap: usize,
}

impl Problems {
    /// Keeps the first `cap` problems.
    pub fn new(cap: usize) -> Problems {
        Problems {
            shown: Vec::new(),
            total: 0,
            cap,
        }
    }

    /// Counts a problem and keeps it while under the cap. `make` runs only for kept problems.
    pub fn push_with(&mut self, make: impl FnOnce() -> FieldError) {
        self.total += 1;
        if self.shown.len() < self.cap {
            let mut e = make();
            if e.field.chars().count() > MAX_SHOWN_FIELD {
                e.field = format!(
                    "{}…",
                    e.field.chars().take(MAX_SHOWN_FIELD).collect::<String>()
                );
            }
            self.shown.push(e);
        }
    }

    /// Every problem counted so far.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The kept problems and the total.
    pub fn into_parts(self) -> (Vec<FieldError>, usize) {
        (self.shown, self.total)
    }
}

/// What happens when an optional field is absent or null.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Absent {
    /// The field must be present.
    Required,
    /// A missing value (`?` in the file).
    Missing,
    /// A category meaning "not measured" (`None` for the lab results).
    Category(&'static str),
}

/// An input field of the API: its name, schema column and absence rule.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    /// The name in the API schema (underscored, as the upstream declared it).
    pub name: &'static str,
    /// The schema column it fills.
    pub col: usize,
    absent: Absent,
}

impl Field {
    /// Whether a request must carry this field.
    pub fn required(&self) -> bool {
        self.absent == Absent::Required
    }

    fn spec(&self) -> &'static ColumnSpec {
        &COLUMNS[self.col]
    }

    /// A short statement of what the field accepts.
    pub fn expected(&self) -> String {
        let spec = self.spec();
        let mut s = match (spec.kind, spec.allowed) {
            (Kind::Integer | Kind::Identifier, _) => {
                format!("a non-negative integer (at most {MAX_INT})")
            }
            (Kind::Categorical, Some(allowed)) => format!(
                "a string, one of {} (other strings are accepted as unknown categories)",
                allowed.join(", ")
            ),
            (Kind::Categorical, None) if spec.name.starts_with("diag_") => {
                "a string holding an ICD-9 code such as \"250.83\", \"V45\" or \"E888\"".into()
            }
            (Kind::Categorical, None) => "a string".into(),
        };
        match self.absent {
            Absent::Required => {}
            Absent::Missing => s.push_str("; optional: absent, null or \"?\" means missing"),
            Absent::Category(c) => s.push_str(&format!(
                "; optional: absent or null means \"{c}\" (not measured)"
            )),
        }
        s
    }
}

const fn absent_rule(c: usize) -> Absent {
    match c {
        col::RACE | col::WEIGHT | col::PAYER_CODE | col::MEDICAL_SPECIALTY => Absent::Missing,
        col::DIAG_1 | col::DIAG_2 | col::DIAG_3 => Absent::Missing,
        col::MAX_GLU_SERUM | col::A1CRESULT => Absent::Category("None"),
        _ => Absent::Required,
    }
}

/// The API name of a schema column: dataset names with `-` become `_` (the upstream's names).
fn api_name(c: usize) -> &'static str {
    const NAMES: [&str; 5] = [
        "glyburide_metformin",
        "glipizide_metformin",
        "glimepiride_pioglitazone",
        "metformin_rosiglitazone",
        "metformin_pioglitazone",
    ];
    let name = COLUMNS[c].name;
    if name.contains('-') {
        NAMES
            .iter()
            .find(|n| n.replace('_', "-") == name)
            .copied()
            .unwrap_or(name)
    } else {
        name
    }
}

/// Every input field in schema order (47: the upstream's 44 plus 3 optional extras).
pub fn fields() -> &'static [Field] {
    static FIELDS: std::sync::OnceLock<Vec<Field>> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| {
        (0..WIDTH)
            .filter(|&c| !matches!(c, col::ENCOUNTER_ID | col::PATIENT_NBR | col::READMITTED))
            .map(|c| Field {
                name: api_name(c),
                col: c,
                absent: absent_rule(c),
            })
            .collect()
    })
}

/// The field a request key names: the API name or the dataset's hyphenated name.
fn field_for(key: &str) -> Option<&'static Field> {
    fields()
        .iter()
        .find(|f| f.name == key || f.spec().name == key)
}

/// A validated cell.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Missing,
    Int(i64),
    Str(Box<str>),
}

/// One validated encounter, readable by schema index like a table row.
#[derive(Debug, Clone, PartialEq)]
pub struct Encounter {
    cells: Vec<Cell>,
    unknown: Vec<&'static str>,
}

impl Row for Encounter {
    fn value(&self, col: usize) -> Value<'_> {
        match self.cells.get(col) {
            Some(Cell::Int(v)) => Value::Int(*v),
            Some(Cell::Str(s)) => Value::Str(s),
            _ => Value::Missing,
        }
    }
}

impl Encounter {
    /// Fields whose value is outside the column's known categories (scored with the model's
    /// unknown-category mapping), by API name.
    pub fn unknown_categories(&self) -> &[&'static str] {
        &self.unknown
    }

    /// Validates a JSON value as one encounter. Errors name fields with `prefix` (for batches:
    /// `encounters[3].`).
    pub fn from_json(value: &Json, prefix: &str) -> Result<Encounter, Vec<FieldError>> {
        let mut problems = Problems::new(usize::MAX);
        match Encounter::validate(value, prefix, &mut problems) {
            Some(e) => Ok(e),
            None => Err(problems.into_parts().0),
        }
    }

    /// Like [`Encounter::from_json`], adding problems to `problems` (which keeps a bounded
    /// number). Returns `None` when this value had any.
    pub fn validate(value: &Json, prefix: &str, problems: &mut Problems) -> Option<Encounter> {
        let Some(obj) = value.as_object() else {
            problems.push_with(|| FieldError {
                field: if prefix.is_empty() {
                    "(body)".into()
                } else {
                    prefix.trim_end_matches('.').into()
                },
                problem: format!("is {}", kind_of(value)),
                expected: "a JSON object with the encounter's fields (see /openapi.json)".into(),
            });
            return None;
        };
        from_object(obj, prefix, problems)
    }
}

fn from_object(
    obj: &Map<String, Json>,
    prefix: &str,
    problems: &mut Problems,
) -> Option<Encounter> {
    let before = problems.total();
    let mut given: Vec<Option<(&str, &Json)>> = vec![None; WIDTH];
    for (key, value) in obj {
        match field_for(key) {
            None => problems.push_with(|| FieldError {
                field: format!("{prefix}{key}"),
                problem: "is not an input field of this API".into(),
                expected: "only the encounter fields listed in /openapi.json".into(),
            }),
            Some(f) => {
                if let Some((first, _)) = given[f.col] {
                    problems.push_with(|| FieldError {
                        field: format!("{prefix}{key}"),
                        problem: format!("repeats `{first}` under another spelling"),
                        expected: format!("`{}` once", f.name),
                    });
                } else {
                    given[f.col] = Some((key.as_str(), value));
                }
            }
        }
    }
    let mut cells = vec![Cell::Missing; WIDTH];
    let mut unknown = Vec::new();
    for f in fields() {
        let name = || format!("{prefix}{}", given[f.col].map_or(f.name, |(k, _)| k));
        let value = given[f.col].map(|(_, v)| v);
        match (value, f.absent) {
            (None | Some(Json::Null), Absent::Required) => problems.push_with(|| FieldError {
                field: name(),
                problem: if value.is_none() {
                    "is required but absent".into()
                } else {
                    "is null, but this field is required".into()
                },
                expected: f.expected(),
            }),
            (None | Some(Json::Null), Absent::Missing) => {}
            (None | Some(Json::Null), Absent::Category(c)) => cells[f.col] = Cell::Str(c.into()),
            (Some(v), _) => match check(f, v) {
                Ok((cell, known)) => {
                    if !known {
                        unknown.push(f.name);
                    }
                    cells[f.col] = cell;
                }
                Err(problem) => problems.push_with(|| FieldError {
                    field: name(),
                    problem,
                    expected: f.expected(),
                }),
            },
        }
    }
    (problems.total() == before).then_some(Encounter { cells, unknown })
}

/// Checks one present, non-null value. Returns the cell and whether the value is a known one.
fn check(f: &Field, v: &Json) -> Result<(Cell, bool), String> {
    let spec = f.spec();
    match spec.kind {
        Kind::Integer | Kind::Identifier => {
            let n = match v {
                Json::Number(n) => n,
                other => return Err(format!("is {}", kind_of(other))),
            };
            let int = if let Some(i) = n.as_i64() {
                Some(i)
            } else if let Some(x) = n.as_f64() {
                (x.fract() == 0.0 && x.abs() <= MAX_INT as f64).then_some(x as i64)
            } else {
                None
            };
            match int {
                Some(i) if (0..=MAX_INT).contains(&i) => Ok((Cell::Int(i), true)),
                Some(i) if i < 0 => Err(format!("is negative ({n})")),
                Some(_) => Err(format!("is too large ({n})")),
                None if n.as_u64().is_some() => Err(format!("is too large ({n})")),
                None => Err(format!("is not a whole number ({n})")),
            }
        }
        Kind::Categorical => {
            let s = match v {
                Json::String(s) => s.as_str(),
                other => return Err(format!("is {}", kind_of(other))),
            };
            if s.is_empty() {
                return Err("is an empty string".into());
            }
            if s.chars().count() > MAX_TEXT {
                return Err(format!("is longer than {MAX_TEXT} characters"));
            }
            // `?` means missing where the dataset allows it; elsewhere it is just an unknown
            // category, like any other unexpected string.
            if s == "?" && f.absent == Absent::Missing {
                return Ok((Cell::Missing, true));
            }
            let known = match spec.allowed {
                Some(allowed) => allowed.contains(&s),
                None if spec.name.starts_with("diag_") => crate::data::load::is_icd9(s),
                None => true,
            };
            Ok((Cell::Str(s.into()), known))
        }
    }
}

/// Plain words for a JSON value's type, for error messages.
pub fn kind_of(v: &Json) -> String {
    match v {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("a boolean ({b})"),
        Json::Number(n) => format!("a number ({n})"),
        Json::String(s) => {
            let shown: String = s.chars().take(40).collect();
            format!("a string (\"{shown}\")")
        }
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

/// A realistic encounter in the API's JSON form: the API test's valid request and the server's
/// warm-up input.
pub fn example_json() -> Json {
    const INTS: [(&str, i64); 11] = [
        ("admission_type_id", 1),
        ("discharge_disposition_id", 1),
        ("admission_source_id", 7),
        ("time_in_hospital", 5),
        ("num_lab_procedures", 47),
        ("num_procedures", 1),
        ("num_medications", 16),
        ("number_outpatient", 0),
        ("number_emergency", 0),
        ("number_inpatient", 1),
        ("number_diagnoses", 9),
    ];
    const TEXT: [(&str, &str); 13] = [
        ("race", "Caucasian"),
        ("gender", "Female"),
        ("age", "[70-80)"),
        ("diag_1", "428"),
        ("diag_2", "250.02"),
        ("diag_3", "401"),
        ("max_glu_serum", "None"),
        ("A1Cresult", ">8"),
        ("metformin", "Steady"),
        ("insulin", "Up"),
        ("change", "Ch"),
        ("diabetesMed", "Yes"),
        ("glipizide", "No"),
    ];
    let mut m = Map::new();
    for f in fields() {
        if f.required() && matches!(f.spec().kind, Kind::Categorical) {
            m.insert(f.name.into(), Json::from("No"));
        }
    }
    for (k, v) in INTS {
        m.insert(k.into(), Json::from(v));
    }
    for (k, v) in TEXT {
        m.insert(k.into(), Json::from(v));
    }
    Json::Object(m)
}

/// The request body of `POST /predict`: one encounter. Field names follow the upstream API; the
/// dataset's hyphenated names (`glyburide-metformin`) are accepted as well. Closed categories
/// accept any other string as an unknown category (scored with the model's unknown mapping and
/// listed in the response's `unknown_categories`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Encounter", example = example_json())]
#[allow(dead_code)] // The schema's source of truth is checked against `fields()` in tests.
pub struct EncounterSchema {
    /// Caucasian, AfricanAmerican, Hispanic, Other, Asian; optional (missing).
    #[schemars(length(min = 1, max = 100))]
    race: Option<String>,
    /// Female, Male, Unknown/Invalid.
    #[schemars(length(min = 1, max = 100))]
    gender: String,
    /// Age bracket: [0-10), [10-20), ..., [90-100).
    #[schemars(length(min = 1, max = 100))]
    age: String,
    /// Weight bracket ([0-25) ... >200); optional extra (the upstream dropped it).
    #[schemars(length(min = 1, max = 100))]
    weight: Option<String>,
    /// Admission type code (IDs_mapping.csv).
    #[schemars(range(max = 4294967295u32))]
    admission_type_id: u32,
    /// Discharge disposition code (IDs_mapping.csv).
    #[schemars(range(max = 4294967295u32))]
    discharge_disposition_id: u32,
    /// Admission source code (IDs_mapping.csv).
    #[schemars(range(max = 4294967295u32))]
    admission_source_id: u32,
    /// Days in hospital.
    #[schemars(range(max = 4294967295u32))]
    time_in_hospital: u32,
    /// Payer code; optional extra (the upstream dropped it).
    #[schemars(length(min = 1, max = 100))]
    payer_code: Option<String>,
    /// Admitting physician's specialty; optional extra (the upstream dropped it).
    #[schemars(length(min = 1, max = 100))]
    medical_specialty: Option<String>,
    #[schemars(range(max = 4294967295u32))]
    num_lab_procedures: u32,
    #[schemars(range(max = 4294967295u32))]
    num_procedures: u32,
    #[schemars(range(max = 4294967295u32))]
    num_medications: u32,
    #[schemars(range(max = 4294967295u32))]
    number_outpatient: u32,
    #[schemars(range(max = 4294967295u32))]
    number_emergency: u32,
    #[schemars(range(max = 4294967295u32))]
    number_inpatient: u32,
    /// Primary diagnosis, ICD-9 code; optional (missing).
    #[schemars(length(min = 1, max = 100))]
    diag_1: Option<String>,
    /// Secondary diagnosis, ICD-9 code; optional (missing).
    #[schemars(length(min = 1, max = 100))]
    diag_2: Option<String>,
    /// Additional secondary diagnosis, ICD-9 code; optional (missing).
    #[schemars(length(min = 1, max = 100))]
    diag_3: Option<String>,
    #[schemars(range(max = 4294967295u32))]
    number_diagnoses: u32,
    /// None, Norm, >200, >300; absent or null means None (not measured).
    #[schemars(length(min = 1, max = 100))]
    max_glu_serum: Option<String>,
    /// None, Norm, >7, >8; absent or null means None (not measured).
    #[serde(rename = "A1Cresult")]
    #[schemars(length(min = 1, max = 100))]
    a1c_result: Option<String>,
    /// No, Steady, Up, Down (same for every medication below).
    #[schemars(length(min = 1, max = 100))]
    metformin: String,
    #[schemars(length(min = 1, max = 100))]
    repaglinide: String,
    #[schemars(length(min = 1, max = 100))]
    nateglinide: String,
    #[schemars(length(min = 1, max = 100))]
    chlorpropamide: String,
    #[schemars(length(min = 1, max = 100))]
    glimepiride: String,
    #[schemars(length(min = 1, max = 100))]
    acetohexamide: String,
    #[schemars(length(min = 1, max = 100))]
    glipizide: String,
    #[schemars(length(min = 1, max = 100))]
    glyburide: String,
    #[schemars(length(min = 1, max = 100))]
    tolbutamide: String,
    #[schemars(length(min = 1, max = 100))]
    pioglitazone: String,
    #[schemars(length(min = 1, max = 100))]
    rosiglitazone: String,
    #[schemars(length(min = 1, max = 100))]
    acarbose: String,
    #[schemars(length(min = 1, max = 100))]
    miglitol: String,
    #[schemars(length(min = 1, max = 100))]
    troglitazone: String,
    #[schemars(length(min = 1, max = 100))]
    tolazamide: String,
    #[schemars(length(min = 1, max = 100))]
    examide: String,
    #[schemars(length(min = 1, max = 100))]
    citoglipton: String,
    #[schemars(length(min = 1, max = 100))]
    insulin: String,
    /// Also accepted as `glyburide-metformin`.
    #[schemars(length(min = 1, max = 100))]
    glyburide_metformin: String,
    /// Also accepted as `glipizide-metformin`.
    #[schemars(length(min = 1, max = 100))]
    glipizide_metformin: String,
    /// Also accepted as `glimepiride-pioglitazone`.
    #[schemars(length(min = 1, max = 100))]
    glimepiride_pioglitazone: String,
    /// Also accepted as `metformin-rosiglitazone`.
    #[schemars(length(min = 1, max = 100))]
    metformin_rosiglitazone: String,
    /// Also accepted as `metformin-pioglitazone`.
    #[schemars(length(min = 1, max = 100))]
    metformin_pioglitazone: String,
    /// No, Ch.
    #[schemars(length(min = 1, max = 100))]
    change: String,
    /// No, Yes.
    #[serde(rename = "diabetesMed")]
    #[schemars(length(min = 1, max = 100))]
    diabetes_med: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_the_upstream_44_plus_3_optional_extras() {
        assert_eq!(fields().len(), 47);
        let upstream: Vec<_> = fields()
            .iter()
            .filter(|f| {
                !matches!(
                    f.col,
                    col::WEIGHT | col::PAYER_CODE | col::MEDICAL_SPECIALTY
                )
            })
            .collect();
        assert_eq!(upstream.len(), 44);
        assert_eq!(fields().iter().filter(|f| f.required()).count(), 38);
    }

    #[test]
    fn schema_matches_the_validator() {
        let schema = serde_json::to_value(schemars::schema_for!(EncounterSchema)).unwrap();
        let props = schema["properties"].as_object().unwrap();
        let names: Vec<&str> = fields().iter().map(|f| f.name).collect();
        let mut listed: Vec<&str> = props.keys().map(String::as_str).collect();
        listed.sort_unstable();
        let mut expected = names.clone();
        expected.sort_unstable();
        assert_eq!(listed, expected);
        let mut required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        required.sort_unstable();
        let mut want: Vec<&str> = fields()
            .iter()
            .filter(|f| f.required())
            .map(|f| f.name)
            .collect();
        want.sort_unstable();
        assert_eq!(required, want);
        for f in fields() {
            let ty = &props[f.name]["type"];
            let int = matches!(f.spec().kind, Kind::Integer);
            assert_eq!(ty == "integer", int, "{}: {ty}", f.name);
        }
        assert_eq!(schema["additionalProperties"], json!(false));
    }

    #[test]
    fn example_is_valid_and_known() {
        let e = Encounter::from_json(&example_json(), "").unwrap();
        assert!(e.unknown_categories().is_empty());
        assert_eq!(e.value(col::AGE), Value::Str("[70-80)"));
        assert_eq!(e.value(col::TIME_IN_HOSPITAL), Value::Int(5));
        assert_eq!(e.value(col::WEIGHT), Value::Missing);
        assert_eq!(e.value(col::READMITTED), Value::Missing);
        assert_eq!(
            e.value(crate::data::schema::index_of("glyburide-metformin").unwrap()),
            Value::Str("No")
        );
    }

    #[test]
    fn hyphenated_names_are_accepted_and_duplicates_refused() {
        let mut v = example_json();
        let o = v.as_object_mut().unwrap();
        let x = o.remove("glyburide_metformin").unwrap();
        o.insert("glyburide-metformin".into(), json!("Up"));
        assert!(Encounter::from_json(&v, "").is_ok());
        v.as_object_mut()
            .unwrap()
            .insert("glyburide_metformin".into(), x);
        let errs = Encounter::from_json(&v, "").unwrap_err();
        assert_eq!(errs.len(), 1);
        assert!(errs[0].problem.contains("another spelling"), "{errs:?}");
    }

    #[test]
    fn errors_name_every_bad_field() {
        let mut v = example_json();
        let o = v.as_object_mut().unwrap();
        o.remove("age");
        o.insert("time_in_hospital".into(), json!("five"));
        o.insert("num_procedures".into(), json!(-1));
        o.insert("number_diagnoses".into(), json!(2.5));
        o.insert("gendre".into(), json!("Female"));
        let errs = Encounter::from_json(&v, "encounters[1].").unwrap_err();
        let named: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            named,
            [
                "encounters[1].gendre",
                "encounters[1].age",
                "encounters[1].time_in_hospital",
                "encounters[1].num_procedures",
                "encounters[1].number_diagnoses"
            ]
        );
        assert!(errs[2].problem.contains("a string (\"five\")"));
        assert!(errs[2].expected.contains("non-negative integer"));
        assert!(errs[1].expected.contains("[0-10)"));
    }

    #[test]
    fn optional_fields_and_unknown_categories() {
        let mut v = example_json();
        let o = v.as_object_mut().unwrap();
        o.remove("race");
        o.remove("A1Cresult");
        o.insert("diag_1".into(), json!(null));
        o.insert("gender".into(), json!("Nonbinary"));
        o.insert("diag_2".into(), json!("not-a-code"));
        o.insert("number_emergency".into(), json!(3.0));
        let e = Encounter::from_json(&v, "").unwrap();
        assert_eq!(e.value(col::RACE), Value::Missing);
        assert_eq!(e.value(col::A1CRESULT), Value::Str("None"));
        assert_eq!(e.value(col::DIAG_1), Value::Missing);
        assert_eq!(e.value(col::NUMBER_EMERGENCY), Value::Int(3));
        assert_eq!(e.unknown_categories(), ["gender", "diag_2"]);
        // `?` is missing where the dataset allows it, an unknown category elsewhere.
        let mut v = example_json();
        v["race"] = json!("?");
        v["insulin"] = json!("?");
        let e = Encounter::from_json(&v, "").unwrap();
        assert_eq!(e.value(col::RACE), Value::Missing);
        assert_eq!(e.unknown_categories(), ["insulin"]);
    }

    #[test]
    fn non_objects_and_odd_values_never_panic() {
        for v in [
            json!(null),
            json!([]),
            json!("x"),
            json!(1e308),
            json!({"age": {"a": 1}}),
            json!({"time_in_hospital": 1e300}),
            json!({"time_in_hospital": 18446744073709551615u64}),
            json!({"age": ""}),
            json!({"age": "x".repeat(200)}),
        ] {
            assert!(Encounter::from_json(&v, "").is_err(), "{v}");
        }
    }
}
