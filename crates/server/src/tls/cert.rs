//! Names in a client's certificate: the subject DN (RFC 4514) and the common name.
//!
//! What SASL EXTERNAL and MQTT certificate login take as the user name, as RabbitMQ's
//! `ssl_cert_login_from = distinguished_name | common_name` (rabbit_ssl:peer_cert_auth_name):
//! the DN in RFC 4514 form, most specific RDN first (`CN=client,O=Acme,C=FR`), or the first CN.

use x509_parser::asn1_rs::Tag;
use x509_parser::oid_registry::{
    Oid, OID_X509_COMMON_NAME, OID_X509_COUNTRY_NAME, OID_X509_LOCALITY_NAME,
    OID_X509_ORGANIZATIONAL_UNIT, OID_X509_ORGANIZATION_NAME, OID_X509_STATE_OR_PROVINCE_NAME,
    OID_X509_STREET_ADDRESS,
};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

/// A certificate that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The bytes are not a DER X.509 certificate.
    #[error("not a DER X.509 certificate: {0}")]
    Parse(String),
}

/// The names of a certificate's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNames {
    /// The subject distinguished name in RFC 4514 form.
    pub subject_dn: String,
    /// The subject's first common name (CN), if it has one.
    pub common_name: Option<String>,
}

impl CertNames {
    /// Reads the subject names of a DER certificate.
    pub fn of(der: &[u8]) -> Result<CertNames, CertError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CertError::Parse(e.to_string()))?;
        let subject = cert.subject();
        let common_name = subject.iter_common_name().next().map(attribute_text);
        Ok(CertNames {
            subject_dn: rfc4514(subject),
            common_name,
        })
    }
}

/// The subject DN of a DER certificate in RFC 4514 form.
pub fn subject_dn(der: &[u8]) -> Result<String, CertError> {
    CertNames::of(der).map(|n| n.subject_dn)
}

/// The first common name of a DER certificate's subject.
pub fn common_name(der: &[u8]) -> Result<Option<String>, CertError> {
    CertNames::of(der).map(|n| n.common_name)
}

/// RFC 4514 section 2.1: the RDNs in reverse order of the encoding, separated by commas;
/// the attributes of a multi-valued RDN separated by `+`.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let value = match text(attr) {
                        Some(s) => escape(&s),
                        None => hex_value(attr),
                    };
                    format!("{}={value}", short_name(attr.attr_type()))
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// RFC 4514 section 3: the short names every implementation knows; others as a dotted OID.
fn short_name(oid: &Oid<'_>) -> String {
    let known = [
        (&OID_X509_COMMON_NAME, "CN"),
        (&OID_X509_LOCALITY_NAME, "L"),
        (&OID_X509_STATE_OR_PROVINCE_NAME, "ST"),
        (&OID_X509_ORGANIZATION_NAME, "O"),
        (&OID_X509_ORGANIZATIONAL_UNIT, "OU"),
        (&OID_X509_COUNTRY_NAME, "C"),
        (&OID_X509_STREET_ADDRESS, "STREET"),
    ];
    if let Some((_, name)) = known.iter().find(|(o, _)| *o == oid) {
        return (*name).to_string();
    }
    match oid.to_id_string().as_str() {
        "0.9.2342.19200300.100.1.25" => "DC".into(),
        "0.9.2342.19200300.100.1.1" => "UID".into(),
        other => other.to_string(),
    }
}

/// The value of a string attribute (the DirectoryString types and IA5String).
fn text(attr: &AttributeTypeAndValue<'_>) -> Option<String> {
    if let Ok(s) = attr.as_str() {
        return Some(s.to_string());
    }
    let data = attr.as_slice();
    match attr.attr_value().tag() {
        // UTF-16 big-endian.
        Tag::BmpString => {
            let units: Vec<u16> = data
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UCS-4 big-endian.
        Tag::UniversalString => data
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                char::from_u32(u32::from_be_bytes(b))
            })
            .collect(),
        // In practice Latin-1.
        Tag::TeletexString => Some(data.iter().map(|&b| char::from(b)).collect()),
        _ => None,
    }
}

/// A value for the common name (lossy for values that are not strings).
fn attribute_text(attr: &AttributeTypeAndValue<'_>) -> String {
    text(attr).unwrap_or_else(|| String::from_utf8_lossy(attr.as_slice()).into_owned())
}

/// RFC 4514 section 2.4: `"+,;<>\` are escaped with a backslash, so are a leading `#` or
/// space and a trailing space; NUL is `\00`.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 4514 section 2.4: a value that is not a string is `#` and the hex of its BER
/// encoding (tag, length, content).
fn hex_value(attr: &AttributeTypeAndValue<'_>) -> String {
    let value = attr.attr_value();
    let data = value.data;
    let mut der = Vec::with_capacity(data.len() + 6);
    let tag = value.tag().0;
    let constructed = if value.header.is_constructed() {
        0x20
    } else {
        0
    };
    der.push(u8::try_from(tag).map_or(0x1f, |t| t.min(0x1e)) | constructed);
    match data.len() {
        n if n < 0x80 => der.push(n as u8),
        n => {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            der.push(0x80 | (bytes.len() - skip) as u8);
            der.extend_from_slice(&bytes[skip..]);
        }
    }
    der.extend_from_slice(data);
    let mut out = String::from("#");
    for b in der {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

    fn cert_with(dn: DistinguishedName) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn the_dn_is_most_specific_first() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CountryName, "FR");
        dn.push(DnType::OrganizationName, "Acme");
        dn.push(DnType::OrganizationalUnitName, "Messaging");
        dn.push(DnType::CommonName, "client-1");
        let names = CertNames::of(&cert_with(dn)).unwrap();
        assert_eq!(names.subject_dn, "CN=client-1,OU=Messaging,O=Acme,C=FR");
        assert_eq!(names.common_name.as_deref(), Some("client-1"));
    }

    #[test]
    fn special_characters_are_escaped() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Smith, Jones & Co+");
        dn.push(DnType::CommonName, " #lead;trail ");
        let der = cert_with(dn);
        assert_eq!(
            subject_dn(&der).unwrap(),
            r"CN=\ #lead\;trail\ ,O=Smith\, Jones & Co\+"
        );
        assert_eq!(common_name(&der).unwrap().as_deref(), Some(" #lead;trail "));
    }

    #[test]
    fn a_certificate_without_cn_has_no_common_name() {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Acme");
        let names = CertNames::of(&cert_with(dn)).unwrap();
        assert_eq!(names.subject_dn, "O=Acme");
        assert_eq!(names.common_name, None);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(CertNames::of(b"not a certificate").is_err());
    }
}
