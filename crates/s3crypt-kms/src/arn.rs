//! AWS KMS key identifiers and ARNs, read the way the AWS Encryption SDK reads them (spec
//! `framework/aws-kms/aws-kms-key-arn.md`; this is not AWS's general ARN grammar).
//!
//! ```text
//! arn : partition : kms : region : account : resource-type / resource-id
//!       non-empty         non-empty non-empty "key"|"alias"   non-empty (may contain '/')
//! ```
//!
//! An *identifier* (what a keyring is configured with) is one of: a KMS ARN (key or alias), an
//! alias name (`alias/NAME`, the resource part of an alias ARN) or a key id (the resource id of a
//! key ARN). What KMS returns and what the ESDK stores as an encrypted data key's provider info is
//! always a **key ARN**.

use std::fmt;

/// Longest identifier accepted (KMS's own limit on `KeyId`).
const MAX_IDENTIFIER_LEN: usize = 2048;

/// The resource type of a KMS ARN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceType {
    /// `key/…`: a KMS key.
    Key,
    /// `alias/…`: an alias that points at a key.
    Alias,
}

/// A well-formed AWS KMS ARN (spec "A valid AWS KMS ARN").
#[derive(Clone, PartialEq, Eq)]
pub struct KmsArn {
    text: String,
    /// Byte ranges of the parts inside `text`.
    partition: (usize, usize),
    region: (usize, usize),
    account: (usize, usize),
    resource_type: ResourceType,
    resource_id: (usize, usize),
}

impl KmsArn {
    /// Parses `s`: exactly six `:`-separated parts, `arn`, a non-empty partition, `kms`, a non-empty
    /// region and account, and a resource `key/ID` or `alias/NAME` with a non-empty id (further
    /// `/` belong to the id).
    ///
    /// # Errors
    /// [`InvalidIdentifier`] saying which part is wrong.
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        let bad = |why: &'static str| InvalidIdentifier::new(s, why);
        if s.len() > MAX_IDENTIFIER_LEN {
            return Err(bad("it is longer than 2048 bytes"));
        }
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad("a KMS ARN has exactly six ':'-separated parts"));
        }
        if parts[0] != "arn" {
            return Err(bad("a KMS ARN starts with \"arn:\""));
        }
        if parts[1].is_empty() {
            return Err(bad("the partition is empty"));
        }
        if parts[2] != "kms" {
            return Err(bad("the service is not \"kms\""));
        }
        if parts[3].is_empty() {
            return Err(bad("the region is empty"));
        }
        if parts[4].is_empty() {
            return Err(bad("the account is empty"));
        }
        let Some((kind, id)) = parts[5].split_once('/') else {
            return Err(bad("the resource is not \"key/ID\" or \"alias/NAME\""));
        };
        let resource_type = match kind {
            "key" => ResourceType::Key,
            "alias" => ResourceType::Alias,
            _ => return Err(bad("the resource type is neither \"key\" nor \"alias\"")),
        };
        if id.is_empty() {
            return Err(bad("the resource id is empty"));
        }
        // Offsets of each part in `s` (the parts are consecutive, separated by one ':').
        let mut offsets = [0usize; 6];
        let mut at = 0;
        for (i, p) in parts.iter().enumerate() {
            offsets[i] = at;
            at += p.len() + 1;
        }
        let range = |i: usize| (offsets[i], offsets[i] + parts[i].len());
        let id_start = offsets[5] + kind.len() + 1;
        Ok(Self {
            text: s.to_owned(),
            partition: range(1),
            region: range(3),
            account: range(4),
            resource_type,
            resource_id: (id_start, s.len()),
        })
    }

    fn part(&self, (a, b): (usize, usize)) -> &str {
        &self.text[a..b]
    }

    /// The whole ARN.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The partition (`aws`, `aws-cn`, `aws-us-gov`, …).
    pub fn partition(&self) -> &str {
        self.part(self.partition)
    }

    /// The region (`us-east-1`, …).
    pub fn region(&self) -> &str {
        self.part(self.region)
    }

    /// The account id.
    pub fn account(&self) -> &str {
        self.part(self.account)
    }

    /// Whether this names a key or an alias.
    pub fn resource_type(&self) -> ResourceType {
        self.resource_type
    }

    /// The key id or alias name (without the `key/` or `alias/` prefix).
    pub fn resource_id(&self) -> &str {
        self.part(self.resource_id)
    }

    /// Whether this is a key ARN (the only kind KMS returns and the ESDK stores in messages).
    pub fn is_key(&self) -> bool {
        self.resource_type == ResourceType::Key
    }

    /// Whether this is a multi-Region key ARN (resource type `key`, id starting with `mrk-`).
    pub fn is_multi_region_key(&self) -> bool {
        self.is_key() && self.resource_id().starts_with("mrk-")
    }
}

impl fmt::Debug for KmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KmsArn").field(&self.text).finish()
    }
}

impl fmt::Display for KmsArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What a keyring can be configured with (spec "A valid AWS KMS identifier").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyIdentifier {
    /// A key ARN or an alias ARN.
    Arn(KmsArn),
    /// An alias name, `alias/NAME` (resolved by KMS in the client's region).
    AliasName(String),
    /// A bare key id such as `1234abcd-12ab-34cd-56ef-1234567890ab` or `mrk-…` (client's region).
    KeyId(String),
}

impl KeyIdentifier {
    /// Parses a key ARN, alias ARN, alias name or key id.
    ///
    /// # Errors
    /// [`InvalidIdentifier`] for an empty string, a malformed ARN (anything starting with `arn:`),
    /// an empty alias name, or a key id containing `:`, `/` or white space.
    pub fn parse(s: &str) -> Result<Self, InvalidIdentifier> {
        if s.is_empty() {
            return Err(InvalidIdentifier::new(s, "it is empty"));
        }
        if s.len() > MAX_IDENTIFIER_LEN {
            return Err(InvalidIdentifier::new(s, "it is longer than 2048 bytes"));
        }
        if s.starts_with("arn:") {
            return KmsArn::parse(s).map(Self::Arn);
        }
        if let Some(name) = s.strip_prefix("alias/") {
            if name.is_empty() {
                return Err(InvalidIdentifier::new(s, "the alias name is empty"));
            }
            return Ok(Self::AliasName(s.to_owned()));
        }
        if s.contains([':', '/']) || s.chars().any(char::is_whitespace) {
            return Err(InvalidIdentifier::new(
                s,
                "not a key ARN, alias ARN, alias name (alias/NAME) or key id",
            ));
        }
        Ok(Self::KeyId(s.to_owned()))
    }

    /// The identifier as given (what is sent to KMS as `KeyId`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Arn(a) => a.as_str(),
            Self::AliasName(s) | Self::KeyId(s) => s,
        }
    }

    /// The key ARN, if this identifier is one (alias ARNs are not).
    pub fn key_arn(&self) -> Option<&KmsArn> {
        match self {
            Self::Arn(a) if a.is_key() => Some(a),
            _ => None,
        }
    }

    /// The region this identifier names, if it is an ARN; otherwise the client's region applies.
    pub fn region(&self) -> Option<&str> {
        match self {
            Self::Arn(a) => Some(a.region()),
            _ => None,
        }
    }
}

impl fmt::Display for KeyIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a usable KMS identifier or ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidIdentifier {
    shown: String,
    why: &'static str,
}

impl InvalidIdentifier {
    fn new(s: &str, why: &'static str) -> Self {
        Self {
            shown: crate::error::printable(s, 160),
            why,
        }
    }
}

impl fmt::Display for InvalidIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\"{}\" is not a valid AWS KMS key identifier: {}",
            self.shown, self.why
        )
    }
}

impl std::error::Error for InvalidIdentifier {}

/// Whether `region` can be a region name (lower-case letters, digits and inner hyphens). Regions
/// come from ARNs in message headers, which anyone can write, and become host names.
pub(crate) fn is_plausible_region(region: &str) -> bool {
    !region.is_empty()
        && region.len() <= 63
        && !region.starts_with('-')
        && !region.ends_with('-')
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn parses_key_and_alias_arns() {
        let a = KmsArn::parse(KEY).unwrap();
        assert_eq!(a.partition(), "aws");
        assert_eq!(a.region(), "us-east-1");
        assert_eq!(a.account(), "111122223333");
        assert_eq!(a.resource_type(), ResourceType::Key);
        assert_eq!(a.resource_id(), "1234abcd-12ab-34cd-56ef-1234567890ab");
        assert!(a.is_key() && !a.is_multi_region_key());
        assert_eq!(a.as_str(), KEY);

        let a = KmsArn::parse("arn:aws-cn:kms:cn-north-1:1:alias/team/x").unwrap();
        assert_eq!(a.partition(), "aws-cn");
        assert_eq!(a.resource_type(), ResourceType::Alias);
        assert_eq!(a.resource_id(), "team/x", "further '/' belong to the id");
        assert!(!a.is_key());

        let m = KmsArn::parse("arn:aws:kms:eu-west-1:1:key/mrk-abc").unwrap();
        assert!(m.is_multi_region_key());
    }

    #[test]
    fn rejects_malformed_arns() {
        for s in [
            "",
            "arn:aws:kms:us-east-1:111122223333",
            "arn:aws:kms:us-east-1:111122223333:key/a:b",
            "arx:aws:kms:us-east-1:1:key/a",
            "arn::kms:us-east-1:1:key/a",
            "arn:aws:s3:us-east-1:1:key/a",
            "arn:aws:kms::1:key/a",
            "arn:aws:kms:us-east-1::key/a",
            "arn:aws:kms:us-east-1:1:key",
            "arn:aws:kms:us-east-1:1:key/",
            "arn:aws:kms:us-east-1:1:grant/a",
            "arn:aws:kms:us-east-1:1:",
        ] {
            assert!(KmsArn::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn identifiers_of_every_kind() {
        assert!(matches!(
            KeyIdentifier::parse(KEY),
            Ok(KeyIdentifier::Arn(_))
        ));
        assert!(KeyIdentifier::parse(KEY).unwrap().key_arn().is_some());
        let alias_arn = KeyIdentifier::parse("arn:aws:kms:us-east-1:1:alias/x").unwrap();
        assert!(alias_arn.key_arn().is_none());
        assert_eq!(alias_arn.region(), Some("us-east-1"));
        assert_eq!(
            KeyIdentifier::parse("alias/x"),
            Ok(KeyIdentifier::AliasName("alias/x".into()))
        );
        assert_eq!(
            KeyIdentifier::parse("mrk-1234"),
            Ok(KeyIdentifier::KeyId("mrk-1234".into()))
        );
        assert_eq!(KeyIdentifier::parse("alias/x").unwrap().region(), None);
        for s in ["", "alias/", "arn:aws:kms", "a b", "key/abc", "x:y"] {
            assert!(KeyIdentifier::parse(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn invalid_identifier_message_is_escaped() {
        let e = KmsArn::parse("arn:\u{1b}[31m").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'), "{e}");
        assert!(e.contains("not a valid AWS KMS key identifier"), "{e}");
    }

    #[test]
    fn plausible_regions() {
        for r in ["us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1"] {
            assert!(is_plausible_region(r), "{r}");
        }
        for r in [
            "",
            "-a",
            "a-",
            "US-EAST-1",
            "evil.com",
            "a/b",
            "a:b",
            &"a".repeat(64),
        ] {
            assert!(!is_plausible_region(r), "{r}");
        }
    }
}
