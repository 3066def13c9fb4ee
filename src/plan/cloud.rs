//! Microsoft clouds and the hosts each one uses (login, Graph, Exchange scope, SMTP).
//! Values follow `shared/reference/microsoft-365.md`; every one can be overridden in config.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    Global,
    UsGov,
    UsGovDod,
    China,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Global, Cloud::UsGov, Cloud::UsGovDod, Cloud::China];

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGov => "usgov",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// Base URL of the Entra ID token endpoint (`{login}/{tenant}/oauth2/v2.0/token`).
    pub fn login_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.partner.microsoftonline.cn",
        }
    }

    /// Base URL of Microsoft Graph.
    pub fn graph_url(self) -> &'static str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The token scope for SMTP AUTH (Exchange Online resource + `/.default`).
    pub fn exchange_scope(self) -> &'static str {
        match self {
            Cloud::Global => "https://outlook.office365.com/.default",
            Cloud::UsGov => "https://outlook.office365.us/.default",
            Cloud::UsGovDod => "https://outlook-dod.office365.us/.default",
            Cloud::China => "https://partner.outlook.cn/.default",
        }
    }

    /// The token scope for Microsoft Graph.
    pub fn graph_scope(self) -> String {
        format!("{}/.default", self.graph_url())
    }

    /// Default SMTP submission host. The DoD and China hosts are not verified against
    /// Microsoft documentation (see the reference); set `smtp_host` when they differ.
    pub fn smtp_host(self) -> &'static str {
        match self {
            Cloud::Global => "smtp.office365.com",
            Cloud::UsGov | Cloud::UsGovDod => "smtp.office365.us",
            Cloud::China => "smtp.partner.outlook.cn",
        }
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Cloud {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Cloud::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown cloud {s:?}, expected one of global, usgov, usgov-dod, china")
            })
    }
}
