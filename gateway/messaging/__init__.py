"""Secure messaging: MedCom-style FHIR messages in a JWS-inside-JWE envelope.

envelope   JOSE: sign, encrypt, open, verify (joserfc)
keys       the gateway's messaging keys and participants' registered keys
message    the MedCom message rules (MessageHeader first, Provenance, parties)
acks       MedCom Acknowledgement messages
records    the ``messages`` and ``deliveries`` tables
inbound    ``$process-message``: open → check → store → acknowledge, one transaction
outbound   what each receiver gets (consent-filtered, re-signed, re-encrypted)
delivery   store-and-forward worker: leases, retries with back-off, failed after the limit
mailbox    ``/messages``: receivers poll and acknowledge; senders follow their deliveries
"""
