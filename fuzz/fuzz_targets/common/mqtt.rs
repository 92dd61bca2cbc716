//! MQTT packets for the connection targets: the remaining length filled in, a CONNECT
//! as guest/guest.

/// A packet: the first byte, the remaining length (variable byte integer), the rest.
pub fn packet(first: u8, rest: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    let mut len = rest.len();
    loop {
        let mut b = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            b |= 0x80;
        }
        p.push(b);
        if len == 0 {
            break;
        }
    }
    p.extend_from_slice(rest);
    p
}

pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// A CONNECT as guest/guest, keep-alive 60 s; a will on `w/<c>` if asked.
pub fn connect(v5: bool, id: &str, clean: bool, will: bool, c: usize) -> Vec<u8> {
    let mut body = Vec::new();
    string(&mut body, b"MQTT");
    body.push(if v5 { 5 } else { 4 });
    let mut flags = 0x80 | 0x40; // username, password
    if clean {
        flags |= 0x02;
    }
    if will {
        flags |= 0x04 | 0x08 | 0x20; // will, QoS 1, retained
    }
    body.push(flags);
    body.extend_from_slice(&60u16.to_be_bytes());
    if v5 {
        body.push(0); // no properties
    }
    string(&mut body, id.as_bytes());
    if will {
        if v5 {
            body.push(0); // no will properties
        }
        string(&mut body, format!("w/{c}").as_bytes());
        string(&mut body, b"bye");
    }
    string(&mut body, b"guest");
    string(&mut body, b"guest");
    packet(0x10, &body)
}
