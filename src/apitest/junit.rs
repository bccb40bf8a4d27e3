//! JUnit XML for a suite run, written with `junit-report`: one testcase per check with its time;
//! failures carry the message, the request and an excerpt of the response.

use std::path::Path;

use junit_report::{Duration, ReportBuilder, TestCaseBuilder, TestSuiteBuilder};

use super::{ApiTestError, SuiteReport};

/// The JUnit document for a report.
pub fn junit_xml(report: &SuiteReport) -> Vec<u8> {
    let mut suite = TestSuiteBuilder::new("health-predict api-test");
    for c in &report.checks {
        let time = Duration::microseconds((c.millis * 1000.0) as i64);
        let mut case = if c.passed {
            TestCaseBuilder::success(&c.name, time)
        } else {
            TestCaseBuilder::failure(&c.name, time, "check_failed", &c.message)
        };
        case.set_classname("api_test");
        if c.passed {
            case.set_system_out(&c.message);
        } else {
            let mut detail = c.message.clone();
            if let Some(r) = &c.request {
                detail.push_str(&format!("\n\nrequest:\n{r}"));
            }
            if let Some(r) = &c.response {
                detail.push_str(&format!("\n\nresponse:\n{r}"));
            }
            case.set_system_out(&detail);
        }
        suite.add_testcase(case.build());
    }
    suite.set_system_out(&format!("base_url: {}", report.base_url));
    let junit = ReportBuilder::new().add_testsuite(suite.build()).build();
    let mut out = Vec::new();
    // Writing to a Vec cannot fail for I/O reasons; an XML error would be a bug in the library.
    if let Err(e) = junit.write_xml(&mut out) {
        tracing::error!(error = %e, "JUnit serialisation failed");
    }
    // junit-report writes a bare `<testsuites>`; readers such as quick-junit and several CI
    // dashboards require its `name` and use its totals, so the root gets them.
    let root = format!(
        "<testsuites name=\"health-predict api-test\" tests=\"{}\" failures=\"{}\" errors=\"0\" time=\"{}\">",
        report.checks.len(),
        report.failed,
        report.millis / 1000.0
    );
    String::from_utf8_lossy(&out)
        .replacen("<testsuites>", &root, 1)
        .into_bytes()
}

/// Writes the JUnit document atomically.
pub fn write_junit(report: &SuiteReport, path: &Path) -> Result<(), ApiTestError> {
    crate::fsutil::write_atomic(path, &junit_xml(report)).map_err(|source| ApiTestError::Junit {
        path: path.to_owned(),
        source,
    })
}
