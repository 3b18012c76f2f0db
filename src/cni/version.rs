//! Spec versions this plugin speaks, and the choice of one for a request.

use super::{CniError, ErrorCode};
use std::fmt;

/// A CNI spec version this plugin supports, ordered by age.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CniVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

pub const SUPPORTED: [CniVersion; 5] = [
    CniVersion::V0_3_0,
    CniVersion::V0_3_1,
    CniVersion::V0_4_0,
    CniVersion::V1_0_0,
    CniVersion::V1_1_0,
];

impl CniVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CniVersion::V0_3_0 => "0.3.0",
            CniVersion::V0_3_1 => "0.3.1",
            CniVersion::V0_4_0 => "0.4.0",
            CniVersion::V1_0_0 => "1.0.0",
            CniVersion::V1_1_0 => "1.1.0",
        }
    }

    pub fn parse(s: &str) -> Option<CniVersion> {
        SUPPORTED.into_iter().find(|v| v.as_str() == s)
    }

    /// Parses a requested version, or says which ones would work.
    pub fn require(s: &str) -> Result<CniVersion, CniError> {
        Self::parse(s).ok_or_else(|| {
            CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("cniVersion {s:?} is not supported by aws-eni-ip"),
            )
            .with_details(format!("use one of {}", supported_list()))
        })
    }

    /// CHECK arrived in 0.4.0.
    pub fn has_check(self) -> bool {
        self >= CniVersion::V0_4_0
    }

    /// STATUS and GC arrived in 1.1.0.
    pub fn has_status_and_gc(self) -> bool {
        self >= CniVersion::V1_1_0
    }

    /// Before 1.0.0 every `ips[]` entry carries `"version": "4"|"6"`.
    pub fn ips_carry_version(self) -> bool {
        self < CniVersion::V1_0_0
    }
}

impl fmt::Display for CniVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

pub fn supported_list() -> String {
    SUPPORTED
        .iter()
        .map(|v| v.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The version a configuration asks for: `cniVersion`, else the newest of `cniVersions` we speak.
pub fn negotiate(
    cni_version: Option<&str>,
    cni_versions: &[String],
) -> Result<CniVersion, CniError> {
    if let Some(v) = cni_version.filter(|v| !v.is_empty()) {
        return CniVersion::require(v);
    }
    if cni_versions.is_empty() {
        return Err(CniError::invalid_config(
            "network config has neither \"cniVersion\" nor \"cniVersions\"",
        )
        .with_details(format!("set \"cniVersion\" to one of {}", supported_list())));
    }
    cni_versions
        .iter()
        .filter_map(|v| CniVersion::parse(v))
        .max()
        .ok_or_else(|| {
            CniError::new(
                ErrorCode::IncompatibleVersion,
                format!("none of cniVersions {cni_versions:?} is supported by aws-eni-ip"),
            )
            .with_details(format!("include one of {}", supported_list()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_version_round_trips() {
        for v in SUPPORTED {
            assert_eq!(CniVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(CniVersion::parse("0.2.0"), None);
        assert_eq!(CniVersion::parse("1.1"), None);
    }

    #[test]
    fn unknown_version_is_code_1_and_lists_the_supported_ones() {
        let e = CniVersion::require("0.2.0").unwrap_err();
        assert_eq!(e.code, ErrorCode::IncompatibleVersion);
        assert!(e.details.contains("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"));
    }

    #[test]
    fn cni_versions_picks_the_newest_supported() {
        let list = vec!["0.4.0".to_string(), "1.0.0".into(), "9.9.9".into()];
        assert_eq!(negotiate(None, &list).unwrap(), CniVersion::V1_0_0);
        assert_eq!(negotiate(Some("0.3.1"), &list).unwrap(), CniVersion::V0_3_1);
        assert_eq!(
            negotiate(None, &["2.0.0".to_string()]).unwrap_err().code,
            ErrorCode::IncompatibleVersion
        );
        assert_eq!(
            negotiate(None, &[]).unwrap_err().code,
            ErrorCode::InvalidConfig
        );
    }

    #[test]
    fn feature_gates_follow_the_spec() {
        assert!(!CniVersion::V0_3_1.has_check());
        assert!(CniVersion::V0_4_0.has_check());
        assert!(!CniVersion::V1_0_0.has_status_and_gc());
        assert!(CniVersion::V1_1_0.has_status_and_gc());
        assert!(CniVersion::V0_4_0.ips_carry_version());
        assert!(!CniVersion::V1_0_0.ips_carry_version());
    }
}
