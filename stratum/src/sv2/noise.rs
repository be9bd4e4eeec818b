//! Noise NX over TCP (the SV2 transport): the handshake for either side and framed, encrypted
//! reading and writing, with a cap on the size of a frame a peer may send.

use std::time::Duration;

use codec_sv2::state::ExpectsHandshakeMessage;
use codec_sv2::{Decoded, Decrypted, Handshake, HandshakeMessage, InitiatorSent, NoiseDecoder, NoiseEncoder, TransportDecryptState, TransportEncryptState};
use framing_sv2::framing::{MessageFrame, SerializedFrame};
use noise_sv2::{AEAD_MAC_LEN, ELLSWIFT_ENCODING_SIZE, INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE, Initiator, Responder};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A transport failure, in words.
#[derive(Debug, thiserror::Error)]
pub enum NoiseError {
    /// The peer closed the connection or the socket failed.
    #[error("connection closed: {0}")]
    Closed(String),
    /// The handshake did not complete (wrong key, garbage, timeout).
    #[error("noise handshake failed: {0}")]
    Handshake(String),
    /// The peer declared a frame larger than the cap.
    #[error("the peer sent a frame of {got} payload bytes; at most {max} are accepted")]
    TooLarge {
        /// Declared payload bytes (at least; one chunk is all that is looked at).
        got: usize,
        /// The cap.
        max: usize,
    },
    /// A frame did not decrypt or decode.
    #[error("bad frame: {0}")]
    Frame(String),
}

/// A decrypted frame: its message type, extension type and payload.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The message type.
    pub msg_type: u8,
    /// The extension type, without the channel bit.
    pub ext_type: u16,
    /// The payload (the serialized message).
    pub payload: Vec<u8>,
}

/// Bytes read from the socket at once (a burst of small frames is one read).
const READ_BUFFER: usize = 64 * 1024;

/// The reading half of an encrypted connection.
pub struct FrameReader {
    reader: BufReader<OwnedReadHalf>,
    decoder: NoiseDecoder,
    state: Option<TransportDecryptState>,
    max_payload: usize,
}

impl std::fmt::Debug for FrameReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader").field("max_payload", &self.max_payload).finish_non_exhaustive()
    }
}

/// The writing half of an encrypted connection.
pub struct FrameWriter {
    writer: OwnedWriteHalf,
    encoder: NoiseEncoder,
    state: TransportEncryptState,
    /// Encrypted frames queued for the next [`Self::flush`].
    out: Vec<u8>,
}

impl std::fmt::Debug for FrameWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameWriter").finish_non_exhaustive()
    }
}

async fn receive_handshake<R: ExpectsHandshakeMessage>(reader: &mut BufReader<OwnedReadHalf>, decoder: &mut NoiseDecoder) -> Result<HandshakeMessage, NoiseError> {
    loop {
        reader.read_exact(decoder.writable()).await.map_err(|e| NoiseError::Closed(e.to_string()))?;
        match decoder.next_handshake_frame::<R>() {
            Ok(Decoded::Frame(frame)) => return Ok(frame),
            Ok(Decoded::Incomplete(_)) => {}
            Err(e) => return Err(NoiseError::Handshake(e.to_string())),
        }
    }
}

/// Answer a client's handshake as the responder (the pool), within `timeout`; frames larger than
/// `max_payload` bytes are refused afterwards.
pub async fn accept(stream: TcpStream, responder: Box<Responder>, timeout: Duration, max_payload: usize) -> Result<(FrameReader, FrameWriter), NoiseError> {
    let (reader, mut writer) = stream.into_split();
    // frames are read a header and a payload at a time: buffered, a burst of them costs one read
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut decoder = NoiseDecoder::new();
    let mut encoder = NoiseEncoder::new();
    let handshake = Handshake::responder(responder);
    let done = async {
        let first = receive_handshake::<Responder>(&mut reader, &mut decoder).await?;
        let payload: [u8; ELLSWIFT_ENCODING_SIZE] =
            first.payload().try_into().map_err(|_| NoiseError::Handshake("the first handshake message has the wrong size".into()))?;
        let (second, transport) = handshake.step_1(payload).map_err(|e| NoiseError::Handshake(e.to_string()))?;
        writer.write_all(encoder.encode_handshake(second).as_ref()).await.map_err(|e| NoiseError::Closed(e.to_string()))?;
        Ok::<_, NoiseError>(transport)
    };
    let transport = tokio::time::timeout(timeout, done)
        .await
        .map_err(|_| NoiseError::Handshake(format!("not completed within {} s", timeout.as_secs())))??;
    let (enc, dec) = transport.split();
    Ok((FrameReader { reader, decoder, state: Some(dec), max_payload }, FrameWriter { writer, encoder, state: enc, out: Vec::new() }))
}

/// An initiator (a miner or proxy) that accepts only certificates signed by the authority key
/// `authority` (base58-check, as the pool prints it and SV2 clients take it).
pub fn initiator(authority: &str) -> Result<Box<Initiator>, NoiseError> {
    let key: key_utils::Secp256k1PublicKey =
        authority.trim().parse().map_err(|_| NoiseError::Handshake(format!("{authority:?} is not an SV2 authority public key (base58-check, as the pool prints it)")))?;
    Initiator::from_raw_k(key.into_bytes()).map_err(|e| NoiseError::Handshake(format!("authority key {authority}: {e:?}")))
}

/// Open a handshake as the initiator (a miner or proxy), within `timeout`. The initiator checks
/// the pool's certificate against the authority key it was made with.
pub async fn connect(stream: TcpStream, initiator: Box<Initiator>, timeout: Duration, max_payload: usize) -> Result<(FrameReader, FrameWriter), NoiseError> {
    let (reader, mut writer) = stream.into_split();
    // frames are read a header and a payload at a time: buffered, a burst of them costs one read
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut decoder = NoiseDecoder::new();
    let mut encoder = NoiseEncoder::new();
    let handshake = Handshake::initiator(initiator);
    let done = async {
        let (first, handshake) = handshake.step_0().map_err(|e| NoiseError::Handshake(e.to_string()))?;
        writer.write_all(encoder.encode_handshake(first).as_ref()).await.map_err(|e| NoiseError::Closed(e.to_string()))?;
        let second = receive_handshake::<InitiatorSent>(&mut reader, &mut decoder).await?;
        let payload: [u8; INITIATOR_EXPECTED_HANDSHAKE_MESSAGE_SIZE] =
            second.payload().try_into().map_err(|_| NoiseError::Handshake("the second handshake message has the wrong size".into()))?;
        handshake.step_2(payload).map_err(|e| NoiseError::Handshake(e.to_string()))
    };
    let transport = tokio::time::timeout(timeout, done)
        .await
        .map_err(|_| NoiseError::Handshake(format!("not completed within {} s", timeout.as_secs())))??;
    let (enc, dec) = transport.split();
    Ok((FrameReader { reader, decoder, state: Some(dec), max_payload }, FrameWriter { writer, encoder, state: enc, out: Vec::new() }))
}

impl FrameReader {
    /// Read frames in a task of their own (a read is not cancellation-safe, so it cannot sit in
    /// a `select!`) until `stop`, an error (passed on, then the end) or the receiver is dropped.
    pub fn spawn(mut self, capacity: usize, stop: CancellationToken) -> mpsc::Receiver<Result<Frame, NoiseError>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(async move {
            loop {
                let r = tokio::select! {
                    _ = stop.cancelled() => break,
                    r = self.read() => r,
                };
                let end = r.is_err();
                if tx.send(r).await.is_err() || end {
                    break;
                }
            }
        });
        rx
    }

    /// The next frame. A frame whose payload is declared larger than the cap is refused as soon
    /// as its header is read, before its payload is. Not cancellation-safe: read from one task.
    pub async fn read(&mut self) -> Result<Frame, NoiseError> {
        loop {
            let want = self.decoder.writable_len();
            // after a header, the decoder asks for the (encrypted) payload, a chunk at a time
            if want > self.max_payload + AEAD_MAC_LEN {
                return Err(NoiseError::TooLarge { got: want - AEAD_MAC_LEN, max: self.max_payload });
            }
            if want > 0 {
                self.reader.read_exact(self.decoder.writable()).await.map_err(|e| NoiseError::Closed(e.to_string()))?;
            }
            let state = self.state.take().ok_or_else(|| NoiseError::Frame("the decryption state was lost after an earlier error".into()))?;
            match self.decoder.next_transport_frame(state) {
                Ok(Decrypted::Frame(mut frame, state)) => {
                    self.state = Some(state);
                    let header = frame.header();
                    if header.payload_length() > self.max_payload {
                        return Err(NoiseError::TooLarge { got: header.payload_length(), max: self.max_payload });
                    }
                    return Ok(Frame { msg_type: header.msg_type(), ext_type: header.ext_type_without_channel_msg(), payload: frame.payload().to_vec() });
                }
                Ok(Decrypted::Incomplete(_, state)) => self.state = Some(state),
                Err(e) => return Err(NoiseError::Frame(e.to_string())),
            }
        }
    }
}

impl FrameWriter {
    /// Encrypt and send one message (after whatever is queued).
    pub async fn write<T: binary_sv2::Serialize + binary_sv2::GetSize>(&mut self, message: T, msg_type: u8, channel_msg: bool) -> Result<(), NoiseError> {
        self.queue(message, msg_type, channel_msg)?;
        self.flush().await
    }

    /// Encrypt one message and queue it for the next [`Self::flush`]: a burst of messages then
    /// costs one write.
    pub fn queue<T: binary_sv2::Serialize + binary_sv2::GetSize>(&mut self, message: T, msg_type: u8, channel_msg: bool) -> Result<(), NoiseError> {
        let frame = MessageFrame::from_message(message, msg_type, 0, channel_msg).map_err(|e| NoiseError::Frame(e.to_string()))?;
        let buf = self.encoder.encode_transport(frame, &mut self.state).map_err(|e| NoiseError::Frame(e.to_string()))?;
        self.out.extend_from_slice(buf.as_ref());
        Ok(())
    }

    /// Send what is queued.
    pub async fn flush(&mut self) -> Result<(), NoiseError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let r = self.writer.write_all(&self.out).await.map_err(|e| NoiseError::Closed(e.to_string()));
        self.out.clear();
        r
    }

    /// Encrypt and send a frame with any payload bytes (a message this crate has no type for, or
    /// a deliberately malformed one in tests).
    pub async fn write_raw(&mut self, msg_type: u8, ext_type: u16, payload: &[u8]) -> Result<(), NoiseError> {
        let len = u32::try_from(payload.len()).ok().filter(|l| *l < 1 << 24).ok_or_else(|| NoiseError::Frame("payload longer than a frame can say".into()))?;
        let mut bytes = Vec::with_capacity(6 + payload.len());
        bytes.extend_from_slice(&ext_type.to_le_bytes());
        bytes.push(msg_type);
        bytes.extend_from_slice(&len.to_le_bytes()[..3]);
        bytes.extend_from_slice(payload);
        let frame = SerializedFrame::from_bytes(bytes).map_err(|e| NoiseError::Frame(e.to_string()))?;
        let buf = self.encoder.encode_transport(frame, &mut self.state).map_err(|e| NoiseError::Frame(e.to_string()))?;
        self.out.extend_from_slice(buf.as_ref());
        self.flush().await
    }

    /// Close the sending side.
    pub async fn shutdown(&mut self) {
        let _ = self.writer.shutdown().await;
    }
}
