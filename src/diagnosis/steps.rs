//! The five setup steps with what the evidence proves of each (the ✔ ⚠ ✘ ? checklist of
//! `check`, `/status` and the status page).

use super::{Inputs, Severity, Verdict};
use crate::checks::smtp::Phase;
use crate::reasons::Step;

/// How far the evidence proves one setup step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Proven to work.
    Ok,
    /// Works, but needs attention (an expiring credential).
    Warning,
    /// Broken: the verdict's step.
    Failed,
    /// Not reached, or not checked.
    Unknown,
}

impl StepStatus {
    /// ✔ ⚠ ✘ ? for people.
    pub fn mark(self) -> &'static str {
        match self {
            StepStatus::Ok => "✔",
            StepStatus::Warning => "⚠",
            StepStatus::Failed => "✘",
            StepStatus::Unknown => "?",
        }
    }
}

/// Each of the five setup steps with what the evidence shows of it.
pub fn setup_steps(i: &Inputs, v: &Verdict) -> [(Step, StepStatus); 5] {
    let token_ok = i.token.is_some_and(|r| r.success())
        || i.smtp
            .and_then(|r| r.smtp())
            .is_some_and(|d| d.token_has_role.is_some());
    let role = i
        .smtp
        .and_then(|r| r.smtp())
        .and_then(|d| d.token_has_role)
        .or_else(|| i.token.and_then(|r| r.token()).and_then(|t| t.smtp_role));
    let smtp_done = i.smtp.map(|r| {
        let d = r.smtp();
        let authenticated = r.success()
            || d.and_then(|d| d.failed_phase)
                .is_some_and(|p| matches!(p, Phase::MailFrom | Phase::Send | Phase::Quit));
        (r.success(), authenticated)
    });
    Step::SETUP.map(|step| {
        let status = if v.step() == step && v.severity() == Severity::Critical {
            StepStatus::Failed
        } else if v.step() == step && v.severity() == Severity::Warning {
            StepStatus::Warning
        } else {
            let proven = match step {
                Step::AppRegistration | Step::Credential => token_ok,
                // Under RBAC for Applications the step is not needed: a token without the
                // role that gets past AUTH proves the app may send.
                Step::ApiPermission => {
                    role == Some(true)
                        || (role == Some(false) && smtp_done.is_some_and(|(_, auth)| auth))
                }
                Step::ExchangeAccess => smtp_done.is_some_and(|(_, auth)| auth),
                Step::ClientConfig => smtp_done.is_some_and(|(ok, _)| ok),
                _ => false,
            };
            if proven {
                StepStatus::Ok
            } else {
                StepStatus::Unknown
            }
        };
        (step, status)
    })
}
