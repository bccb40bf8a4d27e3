//! Steps: units of work with a deadline and a recorded outcome. A step that fails, errors or is
//! interrupted stops everything that depends on it; steps never report success they did not have.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::exit::Diagnoser;

pub use crate::contracts::{Status, StepRecord};

/// What a step's body returns when it ran to completion.
#[derive(Debug)]
pub enum Done<T> {
    /// Passed, with its value and a one-line detail.
    Passed(T, String),
    /// Ran, but what it checks did not hold.
    Failed(String),
    /// Decided not to do its work (e.g. no drift: no training needed).
    Skipped(String),
}

/// Why the pipeline stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Halt {
    Failed {
        step: String,
    },
    Errored {
        step: String,
        exit: crate::exit::Exit,
    },
    Interrupted {
        step: String,
    },
}

impl Halt {
    pub fn step(&self) -> &str {
        match self {
            Halt::Failed { step } | Halt::Errored { step, .. } | Halt::Interrupted { step } => step,
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
    pub fn errored(&self, step: &str, e: &anyhow::Error) -> Halt {
        tracing::error!("{step}: {e:#}");
        Halt::Errored {
            step: step.into(),
            exit: (self.diagnose)(e).0,
        }
    }

    pub fn records(&self) -> &[StepRecord] {
        &self.records
    }

    /// Runs one step with a deadline. `Ok(Some(v))`: passed; `Ok(None)`: skipped by its own
    /// decision (dependants decide what a skip means for them); `Err(halt)`: failed, errored or
    /// interrupted, and the caller must stop.
    pub async fn step<T, F>(
        &mut self,
        name: &str,
        deadline: Duration,
        body: F,
    ) -> Result<Option<T>, Halt>
    where
        F: Future<Output = anyhow::Result<Done<T>>>,
    {
        let started = jiff::Timestamp::now().to_string();
        let clock = Instant::now();
        let _group = crate::ci::group(&format!("step {name}"));
        if self.cancel.is_cancelled() {
            self.push(
                name,
                Status::Errored,
                started,
                0.0,
                "interrupted before it started".into(),
            );
            return Err(Halt::Interrupted { step: name.into() });
        }
        let outcome = tokio::select! {
            r = tokio::time::timeout(deadline, body) => Some(r),
            () = self.cancel.cancelled() => None,
        };
        let seconds = clock.elapsed().as_secs_f64();
        match outcome {
            None => {
                self.push(
                    name,
                    Status::Errored,
                    started,
                    seconds,
                    "interrupted (Ctrl-C or SIGTERM)".into(),
                );
                Err(Halt::Interrupted { step: name.into() })
            }
            Some(Err(_)) => {
                let detail = format!("deadline of {} s exceeded", deadline.as_secs());
                self.push(name, Status::Errored, started, seconds, detail);
                Err(Halt::Errored {
                    step: name.into(),
                    exit: crate::exit::Exit::Infra,
                })
            }
            Some(Ok(Err(e))) => {
                let (exit, hint) = (self.diagnose)(&e);
                let detail = crate::exit::render_with_hint(&e, hint.as_deref())
                    .trim_end()
                    .replace('\n', " | ");
                self.push(name, Status::Errored, started, seconds, detail);
                Err(Halt::Errored {
                    step: name.into(),
                    exit,
                })
            }
            Some(Ok(Ok(Done::Failed(detail)))) => {
                self.push(name, Status::Failed, started, seconds, detail);
                Err(Halt::Failed { step: name.into() })
            }
            Some(Ok(Ok(Done::Skipped(detail)))) => {
                self.push(name, Status::Skipped, started, seconds, detail);
                Ok(None)
            }
            Some(Ok(Ok(Done::Passed(v, detail)))) => {
                self.push(name, Status::Passed, started, seconds, detail);
                Ok(Some(v))
            }
        }
    }

    /// Records a step that will not run, with the reason.
    pub fn skip(&mut self, name: &str, reason: impl Into<String>) {
        let now = jiff::Timestamp::now().to_string();
        self.push(name, Status::Skipped, now, 0.0, reason.into());
    }

    /// Records every planned step that has no record yet as skipped because of `halt`.
    pub fn skip_rest(&mut self, planned: &[&str], halt: &Halt) {
        let verb = match halt {
            Halt::Failed { .. } => "failed",
            Halt::Errored { .. } => "errored",
            Halt::Interrupted { .. } => "was interrupted",
        };
        for name in planned {
            if !self.records.iter().any(|r| r.name == *name) {
                self.skip(name, format!("not run: step `{}` {verb}", halt.step()));
            }
        }
    }

    fn push(&mut self, name: &str, status: Status, started: String, seconds: f64, detail: String) {
        let line = format!("{name}: {} in {seconds:.2} s — {detail}", label(status));
        match status {
            Status::Passed | Status::Skipped => tracing::info!("{line}"),
            Status::Failed | Status::Errored => tracing::error!("{line}"),
        }
        if !self.plain && matches!(status, Status::Failed | Status::Errored) {
            crate::ci::annotation(crate::ci::Level::Error, &line, None);
        }
        self.records.push(StepRecord {
            name: name.into(),
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

    #[tokio::test]
    async fn records_each_outcome() {
        let mut r = runner();
        let v = r
            .step("a", Duration::from_secs(5), async {
                Ok(Done::Passed(7, "ok".into()))
            })
            .await;
        assert_eq!(v, Ok(Some(7)));
        let s = r
            .step("b", Duration::from_secs(5), async {
                Ok(Done::<()>::Skipped("no drift".into()))
            })
            .await;
        assert_eq!(s, Ok(None));
        let f = r
            .step("c", Duration::from_secs(5), async {
                Ok(Done::<()>::Failed("gate said no".into()))
            })
            .await;
        assert_eq!(f, Err(Halt::Failed { step: "c".into() }));
        let e = r
            .step("d", Duration::from_secs(5), async {
                Err::<Done<()>, _>(anyhow::anyhow!("boom"))
            })
            .await;
        assert_eq!(
            e,
            Err(Halt::Errored {
                step: "d".into(),
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
        assert!(r.records()[3].detail.contains("boom"));
    }

    #[tokio::test]
    async fn deadline_and_cancellation_are_errors() {
        let mut r = runner();
        let e = r
            .step("slow", Duration::from_millis(20), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Done::Passed((), String::new()))
            })
            .await;
        assert!(matches!(e, Err(Halt::Errored { ref step, .. }) if step == "slow"));
        assert!(r.records()[0].detail.contains("deadline"));

        let token = CancellationToken::new();
        let mut r = Runner::new(token.clone(), true, diagnose);
        let t2 = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            t2.cancel();
        });
        let e = r
            .step("long", Duration::from_secs(10), async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Ok(Done::Passed((), String::new()))
            })
            .await;
        assert_eq!(
            e,
            Err(Halt::Interrupted {
                step: "long".into()
            })
        );
        r.skip_rest(
            &["long", "next"],
            &Halt::Interrupted {
                step: "long".into(),
            },
        );
        assert_eq!(r.records()[1].name, "next");
        assert_eq!(r.records()[1].status, Status::Skipped);
        assert!(r.records()[1].detail.contains("interrupted"));
    }
}
