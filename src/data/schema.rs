//! The 50-column schema of the UCI "Diabetes 130-US hospitals" encounter file: names in file
//! order, kinds, and the allowed values of every closed category.

/// What a column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An identifier (`encounter_id`, `patient_nbr`): a non-negative integer, never a feature.
    Identifier,
    /// A non-negative integer: a count, a length of stay, or an id code.
    Integer,
    /// A string category; `allowed` lists the values when the set is closed.
    Categorical,
}

/// One column's contract.
#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub kind: Kind,
    /// The closed set of values, or `None` for open sets (payer codes, specialties, ICD-9 codes).
    pub allowed: Option<&'static [&'static str]>,
    /// Whether the literal `?` (missing) may appear.
    pub missing_allowed: bool,
}

const MEDS4: &[&str] = &["No", "Steady", "Up", "Down"];
const RACE: &[&str] = &["Caucasian", "AfricanAmerican", "Hispanic", "Other", "Asian"];
const GENDER: &[&str] = &["Female", "Male", "Unknown/Invalid"];
/// Age brackets in order; the position is the ordinal feature.
pub const AGE_BRACKETS: &[&str] = &[
    "[0-10)", "[10-20)", "[20-30)", "[30-40)", "[40-50)", "[50-60)", "[60-70)", "[70-80)",
    "[80-90)", "[90-100)",
];
const WEIGHT: &[&str] = &[
    "[0-25)",
    "[25-50)",
    "[50-75)",
    "[75-100)",
    "[100-125)",
    "[125-150)",
    "[150-175)",
    "[175-200)",
    ">200",
];
const GLU: &[&str] = &["None", "Norm", ">200", ">300"];
const A1C: &[&str] = &["None", "Norm", ">7", ">8"];
const CHANGE: &[&str] = &["No", "Ch"];
const YES_NO: &[&str] = &["No", "Yes"];
/// The raw target values.
pub const READMITTED: &[&str] = &["NO", ">30", "<30"];

const fn id(name: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        kind: Kind::Identifier,
        allowed: None,
        missing_allowed: false,
    }
}
const fn int(name: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        kind: Kind::Integer,
        allowed: None,
        missing_allowed: false,
    }
}
const fn cat(name: &'static str, allowed: &'static [&'static str], missing: bool) -> ColumnSpec {
    ColumnSpec {
        name,
        kind: Kind::Categorical,
        allowed: Some(allowed),
        missing_allowed: missing,
    }
}
const fn open(name: &'static str) -> ColumnSpec {
    ColumnSpec {
        name,
        kind: Kind::Categorical,
        allowed: None,
        missing_allowed: true,
    }
}

/// Every column, in the file's order.
pub const COLUMNS: [ColumnSpec; 50] = [
    id("encounter_id"),
    id("patient_nbr"),
    cat("race", RACE, true),
    cat("gender", GENDER, false),
    cat("age", AGE_BRACKETS, false),
    cat("weight", WEIGHT, true),
    int("admission_type_id"),
    int("discharge_disposition_id"),
    int("admission_source_id"),
    int("time_in_hospital"),
    open("payer_code"),
    open("medical_specialty"),
    int("num_lab_procedures"),
    int("num_procedures"),
    int("num_medications"),
    int("number_outpatient"),
    int("number_emergency"),
    int("number_inpatient"),
    open("diag_1"),
    open("diag_2"),
    open("diag_3"),
    int("number_diagnoses"),
    cat("max_glu_serum", GLU, false),
    cat("A1Cresult", A1C, false),
    cat("metformin", MEDS4, false),
    cat("repaglinide", MEDS4, false),
    cat("nateglinide", MEDS4, false),
    cat("chlorpropamide", MEDS4, false),
    cat("glimepiride", MEDS4, false),
    cat("acetohexamide", MEDS4, false),
    cat("glipizide", MEDS4, false),
    cat("glyburide", MEDS4, false),
    cat("tolbutamide", MEDS4, false),
    cat("pioglitazone", MEDS4, false),
    cat("rosiglitazone", MEDS4, false),
    cat("acarbose", MEDS4, false),
    cat("miglitol", MEDS4, false),
    cat("troglitazone", MEDS4, false),
    cat("tolazamide", MEDS4, false),
    cat("examide", MEDS4, false),
    cat("citoglipton", MEDS4, false),
    cat("insulin", MEDS4, false),
    cat("glyburide-metformin", MEDS4, false),
    cat("glipizide-metformin", MEDS4, false),
    cat("glimepiride-pioglitazone", MEDS4, false),
    cat("metformin-rosiglitazone", MEDS4, false),
    cat("metformin-pioglitazone", MEDS4, false),
    cat("change", CHANGE, false),
    cat("diabetesMed", YES_NO, false),
    cat("readmitted", READMITTED, false),
];

/// Schema index of each column that other modules refer to by position.
pub mod col {
    pub const ENCOUNTER_ID: usize = 0;
    pub const PATIENT_NBR: usize = 1;
    pub const RACE: usize = 2;
    pub const GENDER: usize = 3;
    pub const AGE: usize = 4;
    pub const WEIGHT: usize = 5;
    pub const ADMISSION_TYPE_ID: usize = 6;
    pub const DISCHARGE_DISPOSITION_ID: usize = 7;
    pub const ADMISSION_SOURCE_ID: usize = 8;
    pub const TIME_IN_HOSPITAL: usize = 9;
    pub const PAYER_CODE: usize = 10;
    pub const MEDICAL_SPECIALTY: usize = 11;
    pub const NUM_LAB_PROCEDURES: usize = 12;
    pub const NUM_PROCEDURES: usize = 13;
    pub const NUM_MEDICATIONS: usize = 14;
    pub const NUMBER_OUTPATIENT: usize = 15;
    pub const NUMBER_EMERGENCY: usize = 16;
    pub const NUMBER_INPATIENT: usize = 17;
    pub const DIAG_1: usize = 18;
    pub const DIAG_2: usize = 19;
    pub const DIAG_3: usize = 20;
    pub const NUMBER_DIAGNOSES: usize = 21;
    pub const MAX_GLU_SERUM: usize = 22;
    pub const A1CRESULT: usize = 23;
    /// The 23 medication columns are `FIRST_MED..=LAST_MED`.
    pub const FIRST_MED: usize = 24;
    pub const LAST_MED: usize = 46;
    pub const CHANGE: usize = 47;
    pub const DIABETES_MED: usize = 48;
    pub const READMITTED: usize = 49;
}

/// The number of columns.
pub const WIDTH: usize = COLUMNS.len();

/// Discharge dispositions meaning the patient died or went to hospice: such encounters cannot be
/// readmitted and are removed before training.
pub const EXPIRED_OR_HOSPICE: &[i64] = &[11, 13, 14, 19, 20, 21];

/// The schema index of a column name.
pub fn index_of(name: &str) -> Option<usize> {
    COLUMNS.iter().position(|c| c.name == name)
}

/// Column names in file order.
pub fn names() -> impl Iterator<Item = &'static str> {
    COLUMNS.iter().map(|c| c.name)
}

/// The binary target: which raw `readmitted` values count as positive.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Readmitted at all (`<30` or `>30`): the upstream's definition.
    #[default]
    Any,
    /// Readmitted within 30 days (`<30`): the clinical definition.
    Lt30,
}

impl Target {
    /// Whether a raw `readmitted` value is positive.
    pub fn positive(self, readmitted: &str) -> bool {
        match self {
            Target::Any => readmitted != "NO",
            Target::Lt30 => readmitted == "<30",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_match_names() {
        assert_eq!(COLUMNS[col::AGE].name, "age");
        assert_eq!(COLUMNS[col::FIRST_MED].name, "metformin");
        assert_eq!(COLUMNS[col::LAST_MED].name, "metformin-pioglitazone");
        assert_eq!(COLUMNS[col::CHANGE].name, "change");
        assert_eq!(COLUMNS[col::READMITTED].name, "readmitted");
        assert_eq!(COLUMNS[col::DIAG_3].name, "diag_3");
        assert_eq!(index_of("A1Cresult"), Some(col::A1CRESULT));
    }

    #[test]
    fn names_are_unique() {
        let mut n: Vec<_> = names().collect();
        n.sort_unstable();
        n.dedup();
        assert_eq!(n.len(), WIDTH);
    }
}
