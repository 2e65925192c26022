/* Every limit a peer can push on, in one place, each with the reason for its size.
 * Checked before anything is allocated. Tests exercise each one. */
#ifndef TT_LIMITS_H
#define TT_LIMITS_H

/* Wire frames. A frame body is at most this large once the peer has said Hello and been
 * welcomed: big enough for a page of device listings (DATA frames are held to
 * TT_DATA_CHUNK_MAX), small enough that one frame never dominates a connection. */
#define TT_FRAME_MAX_BODY (256u * 1024u)
/* Before Hello is accepted the peer is only TLS-authenticated; it may send nothing but a
 * Hello, which needs a few hundred bytes. 4 KiB stops a stranger from making us buffer. */
#define TT_FRAME_MAX_BODY_PREAUTH 4096u
/* protobuf-c unpacking can expand a body ~30x (pointers and structs per repeated element);
 * the counting allocator refuses past these budgets. */
#define TT_MSG_BUDGET (1024u * 1024u)
#define TT_MSG_BUDGET_PREAUTH (16u * 1024u)
/* A ChannelControl (a DATA frame with TT_FF_CTRL, at most TT_DATA_CHUNK_MAX) unpacks
 * within this: its largest field is a chunk of stderr bytes. */
#define TT_CTRL_MSG_BUDGET (64u * 1024u)
/* Untrusted text fields (hostnames, versions, messages), bytes. */
#define TT_TEXT_MAX 256u
#define TT_NAME_MAX 64u
/* Capabilities a Hello may list. */
#define TT_CAPS_MAX 32u

/* Channels. A connection may hold this many channels at once (a console runs a few;
 * an agent one per live technician action). More is refused, not queued. */
#define TT_CHANNELS_MAX 64u
/* Data frame body: small enough that an interactive frame waits behind at most one bulk
 * chunk per channel, large enough to keep TLS records full. */
#define TT_DATA_CHUNK_MAX (16u * 1024u)
/* Credit windows a receiver grants per channel. The broker holds at most one window per
 * channel and direction, so these bound relay memory. Interactive channels (shells) need
 * little; bulk channels need a window of several round trips at full speed: on loopback
 * 1 MiB reached ~340 MB/s and 4 MiB ~450 MB/s end to end (scripts/bench.sh). */
#define TT_WINDOW_DEFAULT (256u * 1024u)
#define TT_WINDOW_BULK (4u * 1024u * 1024u)
#define TT_WINDOW_MAX (4u * 1024u * 1024u)
/* What the broker may hold for one connection's relayed channels, summed: the windows it
 * passes on are clamped to what is left of this (down to one chunk), so 64 bulk channels
 * cannot make it hold 64 full windows. */
#define TT_RELAY_WINDOW_BUDGET (16u * 1024u * 1024u)
/* Control messages queued toward one peer (pongs, window adjusts, replies). A peer that
 * makes us queue more without reading is cut off. */
#define TT_CTRL_QUEUE_MAX (256u * 1024u)
/* Ciphertext queued to one socket before the writer stops pulling from channels; a
 * keystroke waits behind at most this much. */
#define TT_SOCKET_QUEUE_CAP (128u * 1024u)
/* Unsent bytes the kernel may hold for one socket (TCP_NOTSENT_LOWAT): the rest waits in
 * the mux, where a keystroke overtakes bulk data (see core/tls.c). */
#define TT_SOCKET_NOTSENT_LOWAT (16u * 1024u)
/* Hard cap on what tt_tls_write will queue for one socket. */
#define TT_SOCKET_WRITE_CAP (4u * 1024u * 1024u)

/* Channel opens one person may have waiting on devices at once (over all of their
 * connections), and how long a device
 * has to answer one (consent will live inside this). More opens are refused, late ones
 * are cancelled, so one technician cannot fill a device's channel table. */
#define TT_PENDING_OPENS_MAX 8u
#define TT_OPEN_TIMEOUT_MS (90u * 1000u)
/* Channels one person may hold on one device at once (every kind, open or waiting for the
 * device, over all of their connections). A device serves TT_CHANNELS_MAX: one person
 * takes at most an eighth of it, so others are never locked out; 8 is room for a shell, a
 * few commands and a diagnostic at the same time. */
#define TT_CHANNELS_PER_PERSON_DEVICE_MAX 8u
/* What one speedtest (a THROUGHPUT channel) may ask a device to send. A link test needs
 * seconds of traffic: 1 GiB is ~2.5 s at the fastest link measured (~450 MB/s on
 * loopback) and ~90 s at 100 Mbit/s; more only spends the employee's uplink. */
#define TT_THROUGHPUT_BYTES_MAX (1ull << 30)

/* One diagnostics report (a DIAG channel's bytes): every inventory table as JSON. A desktop
 * with 2,500 packages makes ~1.5 MiB; a busy server's mounts, units and sockets add a few
 * more. The console refuses more (before buffering it), the agent does not send it. */
#define TT_DIAG_REPORT_MAX (16u * 1024 * 1024)

/* Inventory pushed by an agent: a part of one table's compressed JSON per request (well under
 * a frame, TT_FRAME_MAX_BODY), and what one offer may bring in all, compressed (a desktop's
 * whole inventory compresses to ~150 KiB; 2,500 packages are most of it). The broker refuses
 * an offer or part past these before it buffers anything. */
#define TT_INV_PART_MAX (192u * 1024u)
#define TT_INV_OFFER_BYTES_MAX (8u * 1024u * 1024u)
#define TT_INV_TABLES_MAX 64u
/* The JSON an offer's wanted tables may declare in all (what the broker will decompress,
 * hash and parse for it: a desktop's whole inventory is ~2 MiB). */
#define TT_INV_OFFER_JSON_MAX (16u * 1024u * 1024u)
/* An offer with no part for this long is dropped (its buffer goes back to the others). */
#define TT_INV_OFFER_IDLE_MS (60u * 1000u)
/* Versions one connection may store: a burst (an agent's start, a few quick changes), then
 * one a minute; past it the agent hears busy and offers again at its next interval. */
#define TT_INV_VERSIONS_BURST 10u
#define TT_INV_VERSION_REFILL_MS (60u * 1000u)
/* What one device's inventory may take in the store (compressed, every version): ~600
 * versions of a changing deb_packages. Past it new versions are refused (logged) until
 * retention prunes old ones. */
#define TT_INV_DEVICE_STORE_MAX (64ull * 1024u * 1024u)
/* Inventory parts buffered across the broker at once (a fleet reconnecting together sends
 * mostly offers; the few that send tables share this): past it, parts are refused busy and
 * the agent offers again at its next interval. */
#define TT_INV_BROKER_BYTES_MAX (256u * 1024u * 1024u)
#define TT_INV_TABLE_NAME_MAX 63u
/* One table's JSON, decompressed (the store's STORE_INV_TABLE_MAX is the same). */
#define TT_INV_TABLE_MAX (4u * 1024u * 1024u)
/* How often an agent collects by default, and the spread around it (so that a fleet started
 * together does not collect together). */
/* Versions per page of `inventory history` (each names up to 64 changed tables: 50 fit a frame). */
#define TT_INV_HISTORY_PAGE_MAX 50u
/* One diff's JSON (the rows added and removed between two versions): a whole fleet's worth of
 * package upgrades on one device is ~1 MiB; past this the broker says to ask per table. */
#define TT_INV_DIFF_MAX (16u * 1024u * 1024u)
/* A page of `inventory find`: at most this many (device, row) matches, and rows, device ids and
 * hostnames adding up to at most this many bytes (each distinct row once a page), so that a
 * page of the longest rows (the store indexes rows up to 16 KiB) stays under TT_FRAME_MAX_BODY
 * and TT_CTRL_QUEUE_MAX. A fleet's 100k matches of one row take ~40 pages. */
#define TT_INV_FIND_PAGE_ROWS 4000u
#define TT_INV_FIND_PAGE_BYTES (192u * 1024u)
/* Conditions of one find (COL=VALUE, COL~SUBSTR), each value at most TT_INV_FIND_VALUE_MAX
 * bytes (an inventory cell is at most 1,024). */
#define TT_INV_FIND_CONDS_MAX 8u
#define TT_INV_FIND_VALUE_MAX 1024u
#define TT_INV_INTERVAL_DEFAULT_MS (3600u * 1000u)
#define TT_INV_JITTER_PCT 10u

/* Listings: pages sized so that a page of the longest entries stays under
 * TT_FRAME_MAX_BODY and TT_CTRL_QUEUE_MAX (a device ~480 bytes, an audit entry ~800 and, in
 * format 2, up to 16 salts and digests: ~1,900). */
#define TT_DEVICE_PAGE_MAX 250u
#define TT_AUDIT_PAGE_MAX 100u

/* Requests a connection may have refused (each one is audited) before it is closed: a
 * peer cannot grow the audit log without bound. */
#define TT_REFUSALS_MAX 16u
/* Enrollment connections (no certificate yet) open at once. Past it the oldest idle one
 * (TLS done, no request yet) of the address holding the most is dropped for a newcomer;
 * with none idle the newcomer is told to retry. */
#define TT_ENROLLING_MAX 64u

/* The front door (broker/frontdoor/). A source address is an IPv4 /32 or an IPv6 /64 (one
 * host, or one site's subnet: a peer owning a /64 has all of it). Defaults of the config
 * keys that bound what one address may hold of what every newcomer shares:
 * - max_handshakes_per_address: a tenth of max_handshakes' default, so that it takes ten
 *   addresses to fill the handshake slots (and then the silent ones are dropped first),
 *   while an office behind one NAT still reconnects 200 at a time;
 * - max_enrolling_per_address: an eighth of TT_ENROLLING_MAX; a rollout behind one NAT
 *   enrolls 8 machines at a time and the others are told to retry. */
#define TT_HANDSHAKES_PER_ADDR_DEFAULT 200
#define TT_ENROLLING_PER_ADDR_DEFAULT 8
/* Refusals written to the audit (a bad token, a revoked or role-less certificate, a wrong
 * Hello), per address and per window, and from every address together per window; the
 * rest are counted and written as one refuse-summary entry per address and window (one
 * more for the whole broker when even the summaries pass the total). 10 a minute shows an
 * admin what one address tried; 120 a minute in all (~2 a second, well under 200 KB of
 * store a minute) is what unauthenticated peers can make the store grow by. */
#define TT_AUDIT_REFUSALS_PER_ADDR_DEFAULT 10
#define TT_AUDIT_REFUSALS_TOTAL_DEFAULT 120
#define TT_AUDIT_REFUSAL_WINDOW_DEFAULT_S 60
/* The per-address table is fixed at start: an entry for every handshake and enrollment
 * connection the broker may hold, plus this many for addresses remembered only for their
 * refusal counts. Past that the least recently seen of those is forgotten (its count goes
 * to the broker-wide summary), so a peer spread over all of 127/8 costs a bounded table. */
#define TT_FRONTDOOR_IDLE_ADDRS 4096u

/* The certificate signer: a process of its own, the only one that holds the CA key
 * (broker/signer/). A request carries a CSR (at most 4 KiB, TT_PKI_CSR_MAX) and a device
 * id; an answer a certificate (~700 bytes DER) or a message. Nothing larger is ours. */
#define TT_SIGNER_REQUEST_MAX 8192u
#define TT_SIGNER_REPLY_MAX 8192u
/* Signings waiting for the signer (one at a time, each well under a millisecond): every
 * enrollment connection's one and a burst of renewals. Past it the request is told to
 * retry (an agent's renewal retries by itself). */
#define TT_SIGNER_QUEUE_MAX 256u
/* An answer that takes longer than this is a wedged signer: it is killed and restarted. */
#define TT_SIGNER_TIMEOUT_MS (10u * 1000u)
/* A signer that keeps dying is restarted at most this often per window; then signing
 * waits for the window to pass (a key that cannot be read now will not be on the 100th
 * try, and the log stays readable). */
#define TT_SIGNER_RESTARTS_MAX 5u
#define TT_SIGNER_RESTART_WINDOW_MS (60u * 1000u)
/* A broker's retry-after is honoured up to this; a larger one is a broker gone wrong. */
#define TT_RETRY_AFTER_MAX_MS (10u * 60u * 1000u)

/* Decompression of one chunk may never produce more than this (bomb guard). */
#define TT_ZSTD_OUT_MAX (TT_DATA_CHUNK_MAX)

/* A device replaced by a newer connection with its identity waits this long before it
 * tries again (two clones of one VM must not evict each other in a tight loop). */
#define TT_REPLACED_RETRY_MS (60u * 1000u)

/* Tickets: pages of the listing and of one ticket's timeline (a ticket ~700 bytes at most,
 * an event ~450), each well under TT_FRAME_MAX_BODY. */
#define TT_TICKET_PAGE_MAX 150u
#define TT_TICKET_EVENTS_PAGE_MAX 200u

/* People (technicians and admins the broker knows): a page of the listing (a person ~440
 * bytes at most, with a full note), well under TT_FRAME_MAX_BODY and TT_CTRL_QUEUE_MAX. */
#define TT_PEOPLE_PAGE_MAX 250u

/* Sessions (consented grants). Live ones per person and per device, and consent prompts a
 * device may have waiting at once: a technician cannot flood an employee with prompts. */
#define TT_SESSIONS_PER_PERSON_MAX 32u
#define TT_SESSIONS_PER_DEVICE_MAX 16u
/* Live sessions one listing carries (a session ~600 bytes at most, well under
 * TT_FRAME_MAX_BODY); an admin's listing of everyone's says when there are more. */
#define TT_SESSION_LIST_MAX 300u
#define TT_CONSENT_PENDING_PER_DEVICE_MAX 4u
/* How long a grant may last, and the default when the technician does not say. */
#define TT_SESSION_DURATION_MAX_MS (12ull * 3600u * 1000u)
#define TT_SESSION_DURATION_DEFAULT_MS (30ull * 60u * 1000u)
/* The employee's answer: the agent waits at most TT_CONSENT_TIMEOUT_MAX_MS (default 60 s,
 * configurable); the broker gives the device this long to answer before it says timeout. */
#define TT_CONSENT_TIMEOUT_DEFAULT_MS (60u * 1000u)
#define TT_CONSENT_TIMEOUT_MAX_MS (75u * 1000u)
#define TT_CONSENT_DEADLINE_MS (TT_CONSENT_TIMEOUT_MAX_MS + 10u * 1000u)
/* The agent's local consent socket: clients at once (prompt windows, `sessions`, `end`)
 * and the longest line one may send. */
#define TT_LOCAL_CLIENTS_MAX 16u
#define TT_LOCAL_LINE_MAX 1024u

/* Shells and commands. */
#define TT_TERM_NAME_MAX 64u
#define TT_TERM_DIM_MAX 4096u     /* columns or rows */
#define TT_EXEC_ARGV_MAX 256u     /* arguments of one exec */
#define TT_EXEC_ARG_MAX 4096u     /* bytes of one argument */
/* A command line for the user's shell (ssh's exec request, exec -t): a long one-liner fits,
 * and with the rest of a ChannelOpen it stays far under TT_FRAME_MAX_BODY. */
#define TT_EXEC_COMMAND_MAX (32u * 1024u)
/* A hostname that names several devices: the refusal lists this many of them. */
#define TT_DEVICE_MATCHES_SHOWN 8u

/* SSH keys people register for the gateway (certs/sshkey.c, broker/gateway.c): one
 * public-key line (a 16384-bit RSA key's is about 2.8 KB), the RSA sizes taken, and how many
 * keys one person may hold. */
#define TT_SSH_KEY_LINE_MAX 4096u
#define TT_SSH_RSA_BITS_MIN 3072u
#define TT_SSH_RSA_BITS_MAX 16384u
#define TT_SSH_KEYS_PER_PERSON 16u
/* Keys in one listing (and what one gateway is given): ~250 bytes each on the wire. */
#define TT_SSH_KEYS_LIST_MAX 4000u

/* Recordings: compressed bytes per answer when a console fetches one, and what one
 * recording may have waiting for the disk before the broker stops passing the shell's
 * credit on (the shell waits; nothing goes unrecorded). */
#define TT_RECORDING_CHUNK_MAX (128u * 1024u)
#define TT_RECORD_BACKLOG_MAX (4u * 1024u * 1024u)

/* The broker's store thread. Requests waiting for it: every peer's connect, channel and
 * session step queues one, so a reconnecting fleet of 100k agents fits while the thread
 * catches up (~50k small writes a second, group-committed); past this the broker tells
 * agents to come back later and refuses people's requests as busy rather than grow.
 * A batch (one transaction) takes at most STORE_BATCH_MAX requests, so a commit never
 * waits behind an unbounded amount of work and completions flow back steadily. */
#define TT_STORE_QUEUE_MAX 65536u
/* Store requests one connection may have waiting (a console asks one page at a time): a
 * person pipelining requests cannot fill the store's queue or make the broker hold their
 * pages; past it, and for everyone past half of TT_STORE_QUEUE_MAX, the answer is busy. */
#define TT_CONN_STORE_REQS_MAX 16u
#define TT_STORE_BATCH_MAX 1024u

/* Checkpoint lines one verification reads, store and file counted apart (each checkpoint
 * is in both): one every 10 min for twenty years is ~2M lines; each costs 48 bytes once
 * its signature is checked. A checkpoint_interval far below the default reaches it sooner. */
#define TT_AUDIT_CHECKPOINTS_MAX (1u << 21)

/* File transfer (CHANNEL_FILES, proto/xfer.c). A chunk is the unit of integrity and resume:
 * 1 MiB keeps the per-chunk costs (a CHUNK message, a sha256, a thread-pool hop, one line of
 * the resume state) under 0.01% of the bytes and gives zstd enough context for its ratio,
 * while a cut transfer loses at most 1 MiB, a 200 Mbit/s link moves a chunk in 40 ms (so
 * progress and cancellation stay prompt), and a 4 MiB bulk window holds four of them. A
 * receiver holds at most one chunk being assembled per channel, plus what its window lets
 * in. A chunk never travels larger than it is: one that zstd does not shrink goes raw. */
#define TT_FILE_CHUNK (1u << 20)
/* Ops (GET, PUT, LIST, MKDIR) a console may have outstanding on one channel: deep enough to
 * keep a tree of small files streaming without a round trip per file, small enough that
 * the agent's per-op state is bounded (past it the op is refused, the channel goes on). */
#define TT_FILE_OPS_MAX 64u
/* A device path in a request: Linux's PATH_MAX including its NUL. Longer is refused. */
#define TT_FILE_PATH_MAX 4095u
/* One component of a path (NAME_MAX). */
#define TT_FILE_NAME_MAX 255u
/* LIST: entries one listing may return (a recursive one walks at most this many) and how
 * deep a recursive walk goes; a bigger tree is refused with a clear error, not truncated. */
#define TT_FILE_LIST_MAX 100000u
#define TT_FILE_DEPTH_MAX 64u
/* A file may be at most this large: resume state is one 32-byte hash per chunk (4 MiB of
 * state at the limit), and a declared size past it is refused before anything is made. */
#define TT_FILE_SIZE_MAX (4ull << 40)
/* An in-band FileCtl message must fit one DATA frame (TT_FF_CTRL is never split); a LIST
 * answer is cut into batches under this. */
#define TT_FILE_CTL_MAX (TT_DATA_CHUNK_MAX - 256u)
/* The agent holds a whole LIST answer before the first batch goes (a tree too big is an
 * error, not a cut list): its names, link targets and owners are capped at this many bytes
 * (TT_FILE_LIST_MAX entries of ~300 bytes; typical trees take a tenth), and at most
 * TT_FILE_LISTINGS_MAX answers are held at once on the agent, however many channels ask;
 * the rest wait their turn. */
#define TT_FILE_LIST_BYTES_MAX (32u * 1024u * 1024u)
#define TT_FILE_LISTINGS_MAX 2u

/* The broker's records of a files relay (broker/session/files.c): one audit entry and ticket event
 * per file, each a store request of ~1.3 KB. At most TT_FILE_RECORDS_INFLIGHT_MAX of one
 * relay wait in the store's queue: a tree of small files streams at the store's pace (~50k
 * writes a second, group-committed: 256 is a few ms of commits ahead) while one relay can
 * never fill the queue every connect and session step shares. Past that (or with the store
 * half full) records wait in the relay, which stops passing credit on both ways until they
 * are queued; a window already granted may still carry some, so at most
 * TT_FILE_RECORDS_HELD_MAX wait (~170 KB): one more ends the channel (the transfer resumes
 * when run again) rather than lose a record or grow. */
#define TT_FILE_RECORDS_INFLIGHT_MAX 256u
#define TT_FILE_RECORDS_HELD_MAX 128u

/* Asset records (tether inventory import/export, broker/inventory/assets.c). A file is parsed by
 * the console (console/inv/csv.c) and sent as rows; the broker checks every one again.
 * - TT_ASSET_FILE_MAX: what the console reads of an import file: 100,000 rows of ~300 bytes
 *   are ~30 MB, so 64 MiB holds twice the fleet we size for; a larger file is refused
 *   before it is read.
 * - TT_ASSET_ROWS_MAX: rows one import may hold (two 100k fleets' worth); the parser
 *   refuses the row past it before it keeps it, the broker a declared count past it before
 *   it allocates.
 * - TT_ASSET_COLUMNS_MAX, TT_ASSET_HEADER_MAX: Snipe-IT's twelve columns, custom fields and an
 *   export's nine columns of facts (so an export imports again);
 *   a column name is a few words.
 * - TT_ASSET_CELL_MAX: one cell (Notes is the longest in practice: a few lines).
 * - TT_ASSET_IMPORT_BYTES_MAX: cell bytes the broker stages for one import (it runs in one
 *   transaction, so it is all held at once), and TT_ASSET_BROKER_BYTES_MAX across every
 *   import being received.
 * - TT_ASSET_PART_BYTES, TT_ASSET_PART_ROWS: one part of an import or a page of an export,
 *   well under TT_FRAME_MAX_BODY and within TT_MSG_BUDGET once unpacked (each cell costs a
 *   pointer pair and an allocation).
 * - TT_ASSET_WHERE_MAX: --where conditions of one listing.
 * - TT_ASSET_REPORT_ITEMS: entries per list of an import's report (the counts are whole).
 * - TT_ASSET_IMPORT_IDLE_MS: an import with no part for this long is dropped. */
#define TT_ASSET_FILE_MAX (64u * 1024u * 1024u)
#define TT_ASSET_ROWS_MAX 200000u
#define TT_ASSET_COLUMNS_MAX 96u
#define TT_ASSET_HEADER_MAX 128u
#define TT_ASSET_CELL_MAX 2048u
#define TT_ASSET_IMPORT_BYTES_MAX (64u * 1024u * 1024u)
#define TT_ASSET_BROKER_BYTES_MAX (128u * 1024u * 1024u)
#define TT_ASSET_PART_BYTES (64u * 1024u)
#define TT_ASSET_PART_ROWS 500u
#define TT_ASSET_WHERE_MAX 8u
#define TT_ASSET_REPORT_ITEMS 200u
#define TT_ASSET_IMPORT_IDLE_MS (60u * 1000u)

/* Help that comes to the help desk (broker/helpdesk/, agent/help/).
 * - TT_HELP_NONCE_LEN: the random id a help request carries from the moment it is asked, so a
 *   resend after a lost answer opens no second ticket.
 * - TT_HELP_SNAPSHOT_MAX: the diagnostics snapshot rides in the request itself, zstd: a
 *   report is ~150 KB of JSON and ~25 KB compressed; this leaves eight times that and stays
 *   under TT_FRAME_MAX_BODY. A larger one is left out and the ticket says so.
 * - TT_HELP_ASKS_PER_HOUR: help requests one device may open in an hour (counted in the
 *   store, so a reconnect does not reset it); past it the person is told when to try again.
 * - TT_HELP_QUEUE_MAX: requests an offline agent keeps (on disk) until it connects.
 * - TT_HELP_TICKETS_MAX: one person's tickets in `tether-agent tickets`, newest first. */
#define TT_HELP_NONCE_LEN 16u
#define TT_HELP_SNAPSHOT_MAX (192u * 1024u)
#define TT_HELP_ASKS_PER_HOUR 5u
/* Comments the people on one device may add to their tickets in an hour (each is a timeline
 * event and an audit entry): a conversation fits, a loop does not. */
#define TT_HELP_COMMENTS_PER_HOUR 30u
#define TT_HELP_QUEUE_MAX 8u
#define TT_HELP_TICKETS_MAX 20u

/* Health checks and alerts (proto/checks.c, agent/checks/, broker/helpdesk/).
 * - TT_CHECK_RESULTS_MAX: results in one report (a machine with 200 mounts and units
 *   still fits; each is ~200 bytes, so a report stays far under TT_FRAME_MAX_BODY).
 * - TT_CHECK_FULL_REPORT_MS: every result is sent again this often (the broker's view of
 *   "last run" stays fresh without a message per run).
 * - TT_CHECK_REPORTS_PER_MIN: reports one device may send a minute (counted in the store, so
 *   a reconnect does not reset it) before the broker refuses the rest (a flapping or hostile
 *   agent cannot write the store flat out).
 * - TT_POLICY_SETTINGS_MAX: settings in one policy request or push; TT_POLICY_VALUE_MAX
 *   the longest value (a list of services or certificate paths).
 * - TT_ALERT_PAGE_MAX: alerts in one listing page (~500 bytes each).
 * - TT_ALERT_SNOOZE_MAX_MS: the longest snooze: a week; longer is a policy change.
 * - TT_TICKET_CHILDREN_MAX: a storm ticket's children listed with it (all are counted).
 * - TT_CHECK_DIM_MAX: a result's dimension (a mount point, a unit, a certificate's path);
 *   TT_CHECK_TEXT_MAX its value, threshold and message. With TT_CHECK_RESULTS_MAX results a
 *   full report is at most ~150 KiB, under TT_FRAME_MAX_BODY and TT_CTRL_QUEUE_MAX; a longer
 *   text is cut at a whole character, a longer dimension is not tracked (it would not be one).
 * - TT_CHECK_LIST_MAX: items of one list setting (required services, certificate paths,
 *   mount types to ignore): a policy names a few; each still fits in TT_POLICY_VALUE_MAX. */
#define TT_CHECK_RESULTS_MAX 256u
#define TT_CHECK_DIM_MAX 200u
#define TT_CHECK_TEXT_MAX 160u
#define TT_CHECK_LIST_MAX 32u
#define TT_CHECK_FULL_REPORT_MS (15u * 60u * 1000u)
#define TT_CHECK_REPORTS_PER_MIN 30u
#define TT_POLICY_SETTINGS_MAX 128u
#define TT_POLICY_VALUE_MAX 1024u
#define TT_ALERT_PAGE_MAX 200u
#define TT_ALERT_SNOOZE_MAX_MS (7ull * 24u * 3600u * 1000u)
#define TT_TICKET_CHILDREN_MAX 200u
/* Tickets of its own one device's alerts may open in an hour. A device names its dimensions
 * (mount points, units, files): a broken or hostile one could name new ones at every report
 * and fill the queue; past this its new failures are recorded as suppressed (logged, audited
 * as an alert "flood") until the hour has room. A real machine rarely has a tenth of it. */
#define TT_ALERT_TICKETS_PER_DEVICE_HOUR 20u
/* Alert rows one device keeps (an alert is kept after it resolves, for its ticket's story):
 * twice what it may have live; past it, its oldest resolved ones go. */
#define TT_ALERTS_PER_DEVICE_MAX (2u * TT_CHECK_RESULTS_MAX)

/* Knowledge base (broker/helpdesk/kb.c): an article's Markdown body, the checks one article
 * may name, hits per search, and the longest query (a few words). TT_KB_LINKS_MAX: articles
 * one ticket may link, every one of them shown with the ticket (~1 KiB each in its detail). */
#define TT_KB_BODY_MAX (64u * 1024u)
#define TT_KB_CHECKS_MAX 8u
#define TT_KB_HITS_MAX 20u
#define TT_KB_QUERY_MAX 256u
#define TT_KB_LINKS_MAX 20u

/* Reports (broker/records/report.c). A report keeps a few numbers per ticket it covers (~48
 * bytes): past TT_REPORT_TICKETS_MAX tickets in the range it is refused (narrow the range), so
 * one report holds at most ~24 MiB. The store's reader is lent TT_REPORT_CHUNK tickets (or
 * TT_REPORT_AUDIT_CHUNK audit entries) at a time, so listings and verifications go on between
 * chunks. Rows: groups past TT_REPORT_ROWS_MAX are summed into one last row (a row is ~200
 * bytes on the wire, all well under TT_FRAME_MAX_BODY); TT_REPORT_TOP_MAX names per top list;
 * TT_REPORT_KEYS_MAX distinct devices, people, checks and actions counted, the rest as one;
 * TT_REPORT_BUCKETS_MAX points on the time axis; TT_REPORT_RANGE_MAX_MS the longest range. */
#define TT_REPORT_TICKETS_MAX 500000u
#define TT_REPORT_CHUNK 500u
#define TT_REPORT_AUDIT_CHUNK 2000u
#define TT_REPORT_ROWS_MAX 500u
#define TT_REPORT_TOP_MAX 20u
#define TT_REPORT_KEYS_MAX 100000u
#define TT_REPORT_BUCKETS_MAX 120u
#define TT_REPORT_RANGE_MAX_MS (10ll * 366 * 86400000)

/* The SIEM feed (broker/records/siem.c): one message (an entry in its format, tt/auditfmt.h);
 * the bytes of messages written and not yet acknowledged by the collector's TCP (the store
 * holds the rest: the queue never grows with an outage); and how long a collector may leave
 * what it was sent unacknowledged before it is dropped and reconnected. */
#define TT_SIEM_MSG_MAX 8192u
#define TT_SIEM_QUEUE_MAX (256u * 1024u)
#define TT_SIEM_STALL_MS 60000u

/* Retention (broker/records/retention.c): a class is kept at least a day and at most ten
 * years; a sweep step removes at most TT_RETENTION_BUDGET rows (recordings at most 256 files)
 * before the writer takes other requests. A closed ticket's rows go in one step, so that step
 * may pass the budget by that ticket's (its timeline, sessions, reports, its storm's members). */
#define TT_RETENTION_MIN_MS 86400000ull
#define TT_RETENTION_MAX_MS (3653ull * 86400000ull)
#define TT_RETENTION_BUDGET 2000u

/* person export (broker/records/person.c): records a page carries (each a row as JSON, at most
 * ~1.5 KiB: a page stays well under TT_FRAME_MAX_BODY), and audit entries one page looks
 * through (the reader is never held long by a search of the whole log). */
#define TT_PERSON_PAGE_MAX 100u
#define TT_PERSON_AUDIT_WINDOW 20000u
/* person erase's answer: held tickets it lists, and the classes it counts (the console
 * refuses an answer with more). */
#define TT_ERASE_HELD_MAX 32u
#define TT_ERASE_CLASSES_MAX 16u

/* Agent releases and rollouts (issue 14; tt/release.h has the manifest's own). An upload
 * part fits a frame with room for the manifest beside it. The broker keeps at most
 * TT_RELEASES_MAX releases (an admin removes old ones) and an upload left idle this long is
 * dropped. A rollout covers at most TT_ROLLOUT_DEVICES_MAX devices; at most
 * TT_ROLLOUT_ACTIVE_MAX of them download or install at once (the rest wait their turn), and
 * rollout status lists TT_ROLLOUT_SHOWN_MAX of them (counts cover all). A new agent has
 * between TT_ROLLOUT_HEALTH_MIN_S and _MAX_S to come back healthy. */
#define TT_RELEASE_PART_MAX (192u * 1024u)
#define TT_RELEASES_MAX 256u
#define TT_RELEASE_UPLOAD_IDLE_MS (60u * 1000u)
#define TT_ROLLOUT_DEVICES_MAX 100000u
#define TT_ROLLOUT_ACTIVE_MAX 64u
#define TT_ROLLOUT_SHOWN_MAX 500u
#define TT_ROLLOUT_LISTED_MAX 256u /* devices a rollout may name instead of a group */
#define TT_ROLLOUT_HEALTH_MIN_S 5u
#define TT_ROLLOUT_HEALTH_MAX_S (24u * 3600u)

/* Broker-wide. */
#define TT_CONNECTIONS_MAX_DEFAULT 200000

#endif
