//! Steps: units of work with a deadline and a recorded outcome. A step that fails, errors or is
//! interrupted stops everything that depends on it; steps never report success they did not have.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::exit::Diagnoser;

pub use crate::contracts::{Status, StepRecord};

/// The steps of a run, in order. A step's name is what `run.json`, `summary.md`, the logs and
/// `pipeline plan` show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Load,
    Drift,
    Dataset,
    Train,
    Evaluate,
    Gate,
    Register,
    Package,
    ApiTest,
    Push,
    Deploy,
    Verify,
    Promote,
    Report,
}

impl Step {
    /// Every step, in the order a run takes them.
    pub const ALL: [Step; 14] = [
        Step::Load,
        Step::Drift,
        Step::Dataset,
        Step::Train,
        Step::Evaluate,
        Step::Gate,
        Step::Register,
        Step::Package,
        Step::ApiTest,
        Step::Push,
        Step::Deploy,
        Step::Verify,
        Step::Promote,
        Step::Report,
    ];

    /// The name records and summaries carry.
    pub fn name(self) -> &'static str {
        match self {
            Step::Load => "load",
            Step::Drift => "drift",
            Step::Dataset => "dataset",
            Step::Train => "train",
            Step::Evaluate => "evaluate",
            Step::Gate => "gate",
            Step::Register => "register",
            Step::Package => "package",
            Step::ApiTest => "api-test",
            Step::Push => "push",
            Step::Deploy => "deploy",
            Step::Verify => "verify",
            Step::Promote => "promote",
            Step::Report => "report",
        }
    }

    /// The steps after this one, in order.
    pub fn after(self) -> &'static [Step] {
        // `ALL` lists the variants in declaration order, so a step's discriminant is its index.
        &Step::ALL[self as usize + 1..]
    }

    /// The steps from `self` through `last`, in run order.
    pub fn through(self, last: Step) -> &'static [Step] {
        &Step::ALL[self as usize..=last as usize]
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a step's body returns when it ran to completion. A step that does not run is not
/// a body's outcome: the orchestration records it with [`Runner::skip`], with the reason.
#[derive(Debug)]
pub enum Done<T> {
    /// Passed, with its value and a one-line detail.
    Passed(T, String),
    /// Ran, but what it checks did not hold.
    Failed(String),
}

/// Why the pipeline stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    Failed { step: Step },
    Errored { step: Step, exit: crate::exit::Exit },
    Interrupted { step: Step },
}

impl Halt {
    pub fn step(&self) -> Step {
        match self {
            Halt::Failed { step } | Halt::Errored { step, .. } | Halt::Interrupted { step } => {
                *step
            }
        }
    }
}

/// Runs steps in order, records them and stops at the first that fails.
#[derive(Debug)]
pub struct Runner {
    records: Vec<StepRecord>,
    cancel: CancellationToken,
    plain: bool,
    diagnose: Diagnoser,
}

impl Runner {
    /// `plain`: log one line per step (CI) rather than progress on a terminal. `diagnose` gives
    /// an errored step its exit code and hint.
    pub fn new(cancel: CancellationToken, plain: bool, diagnose: Diagnoser) -> Runner {
        Runner {
            records: Vec::new(),
            cancel,
            plain,
            diagnose,
        }
    }

    /// Stops the run for an error outside a step's body, with the exit code its diagnosis gives.
    pub fn errored(&self, step: Step, e: &anyhow::Error) -> Halt {
        tracing::error!("{step}: {e:#}");
        Halt::Errored {
            step,
            exit: (self.diagnose)(e).0,
        }
    }

    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    /// Runs one step with a deadline. `Ok(v)`: passed; `Err(halt)`: failed, errored or
    /// interrupted, and the caller must stop.
    pub async fn step<T, F>(&mut self, step: Step, deadline: Duration, body: F) -> Result<T, Halt>
    where
        F: Future<Output = anyhow::Result<Done<T>>>,
    {
        let started = jiff::Timestamp::now().to_string();
        let clock = Instant::now();
        let _group = crate::ci::group(&format!("step {step}"));
        if self.cancel.is_cancelled() {
            self.push(
                step,
                Status::Errored,
                started,
                0.0,
                "interrupted before it started".into(),
            );
            return Err(Halt::Interrupted { step });
        }
        let outcome = tokio::select! {
            r = tokio::time::timeout(deadline, body) => Some(r),
            () = self.cancel.cancelled() => None,
        };
        let seconds = clock.elapsed().as_secs_f64();
        match outcome {
            None => {
                self.push(
                    step,
                    Status::Errored,
                    started,
                    seconds,
                    "interrupted (Ctrl-C or SIGTERM)".into(),
                );
                Err(Halt::Interrupted { step })
            }
            Some(Err(_)) => {
                let detail = format!("deadline of {} s exceeded", deadline.as_secs());
                self.push(step, Status::Errored, started, seconds, detail);
                Err(Halt::Errored {
                    step,
                    exit: crate::exit::Exit::Infra,
                })
            }
            Some(Ok(Err(e))) => {
                let (exit, hint) = (self.diagnose)(&e);
                let detail = crate::exit::render_with_hint(&e, hint.as_deref())
                    .trim_end()
                    .replace('\n', " | ");
                self.push(step, Status::Errored, started, seconds, detail);
                Err(Halt::Errored { step, exit })
            }
            Some(Ok(Ok(Done::Failed(detail)))) => {
                self.push(step, Status::Failed, started, seconds, detail);
                Err(Halt::Failed { step })
            }
            Some(Ok(Ok(Done::Passed(v, detail)))) => {
                self.push(step, Status::Passed, started, seconds, detail);
                Ok(v)
            }
        }
    }

    /// Records a step that will not run, with the reason.
    pub fn skip(&mut self, step: Step, reason: impl Into<String>) {
        let now = jiff::Timestamp::now().to_string();
        self.push(step, Status::Skipped, now, 0.0, reason.into());
    }

    /// Records each of `steps` as not run, for the same reason.
    pub fn skip_all(&mut self, steps: &[Step], reason: &str) {
        for step in steps {
            self.skip(*step, reason);
        }
    }

    /// Records every planned step that has no record yet as skipped because of `halt`.
    pub fn skip_rest(&mut self, planned: &[Step], halt: &Halt) {
        let verb = match halt {
            Halt::Failed { .. } => "failed",
            Halt::Errored { .. } => "errored",
            Halt::Interrupted { .. } => "was interrupted",
        };
        for step in planned {
            if !self.records.iter().any(|r| r.name == step.name()) {
                self.skip(*step, format!("not run: step `{}` {verb}", halt.step()));
            }
        }
    }

    fn push(&mut self, step: Step, status: Status, started: String, seconds: f64, detail: String) {
        let line = format!("{step}: {} in {seconds:.2} s — {detail}", label(status));
        match status {
            Status::Passed | Status::Skipped => tracing::info!("{line}"),
            Status::Failed | Status::Errored => tracing::error!("{line}"),
        }
        if !self.plain && matches!(status, Status::Failed | Status::Errored) {
            crate::ci::annotation(crate::ci::Level::Error, &line, None);
        }
        self.records.push(StepRecord {
            name: step.name().into(),
            status,
            started,
            seconds,
            detail,
        });
    }
}

/// A status as shown to people.
pub fn label(status: Status) -> &'static str {
    match status {
        Status::Passed => "passed",
        Status::Failed => "FAILED",
        Status::Skipped => "skipped",
        Status::Errored => "ERRORED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the errors here carry themselves (the domain types are known only to `cli`).
    fn diagnose(e: &anyhow::Error) -> crate::exit::Diagnosis {
        crate::exit::diagnose_with(e, |_| None)
    }

    fn runner() -> Runner {
        Runner::new(CancellationToken::new(), true, diagnose)
    }

    #[test]
    fn steps_keep_their_recorded_names_and_order() {
        let names: Vec<_> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "load", "drift", "dataset", "train", "evaluate", "gate", "register", "package",
                "api-test", "push", "deploy", "verify", "promote", "report"
            ]
        );
        for (i, s) in Step::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s}");
        }
        assert_eq!(Step::Promote.after(), [Step::Report]);
        assert_eq!(Step::Load.after().len(), 13);
        assert_eq!(
            Step::Gate.through(Step::Package),
            [Step::Gate, Step::Register, Step::Package]
        );
    }

    #[tokio::test]
    async fn records_each_outcome() {
        let mut r = runner();
        let v = r
            .step(Step::Load, Duration::from_secs(5), async {
                Ok(Done::Passed(7, "ok".into()))
            })
            .await;
        assert_eq!(v, Ok(7));
        r.skip(Step::Drift, "no batch");
        let f = r
            .step(Step::Gate, Duration::from_secs(5), async {
                Ok(Done::<()>::Failed("gate said no".into()))
            })
            .await;
        assert_eq!(f, Err(Halt::Failed { step: Step::Gate }));
        let e = r
            .step(Step::Register, Duration::from_secs(5), async {
                Err::<Done<()>, _>(anyhow::anyhow!("boom"))
            })
            .await;
        assert_eq!(
            e,
            Err(Halt::Errored {
                step: Step::Register,
                exit: crate::exit::Exit::Failure
            })
        );
        let statuses: Vec<_> = r.records().iter().map(|x| x.status).collect();
        assert_eq!(
            statuses,
            [
                Status::Passed,
                Status::Skipped,
                Status::Failed,
                Status::Errored
            ]
        );
        let names: Vec<_> = r.records().iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["load", "drift", "gate", "register"]);
        assert!(r.records()[3].detail.contains("boom"));
    }

    #[tokio::test]
    async fn deadline_and_cancellation_are_errors() {
        let mut r = runner();
        let e = r
            .step(Step::Train, Duration::from_millis(20), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Done::Passed((), String::new()))
            })
            .await;
        assert!(matches!(
            e,
            Err(Halt::Errored {
                step: Step::Train,
                ..
            })
        ));
        assert!(r.records()[0].detail.contains("deadline"));

        let token = CancellationToken::new();
        let mut r = Runner::new(token.clone(), true, diagnose);
        let t2 = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            t2.cancel();
        });
        let e = r
            .step(Step::Train, Duration::from_secs(10), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Done::Passed((), String::new()))
            })
            .await;
        assert_eq!(e, Err(Halt::Interrupted { step: Step::Train }));
        r.skip_rest(
            &[Step::Train, Step::Evaluate],
            &Halt::Interrupted { step: Step::Train },
        );
        assert_eq!(r.records()[1].name, "evaluate");
        assert_eq!(r.records()[1].status, Status::Skipped);
        assert!(r.records()[1].detail.contains("interrupted"));
    }
}
