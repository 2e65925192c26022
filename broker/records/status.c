/* tether status (admins): the broker's version, uptime and load, and the SIEM feed's state:
 * connected or since when not, how far the collector has acknowledged, and why it last failed. */
#include <string.h>
#include "broker.h"
#include "tt/msg.h"

int broker_status_request(broker_conn_t *c, uint32_t id) {
  broker_t *b = c->b;
  Tether__Status st = TETHER__STATUS__INIT;
  st.version = tt_text(TT_VERSION);
  st.started_ms = b->started_ms;
  st.now_ms = broker_unix_ms();
  st.connections = b->nconns;
  st.agents = b->nagents;
  st.store_backlog = store_svc_backlog(b->svc);
  broker_siem_status_t s;
  broker_siem_status(b, &s);
  Tether__SiemStatus siem = TETHER__SIEM_STATUS__INIT;
  if (s.format) {
    siem.target = tt_text(s.target);
    siem.format = tt_text(s.format);
    siem.up = s.up;
    siem.acked = (uint64_t)s.acked;
    siem.head = (uint64_t)s.head;
    siem.down_since_ms = s.down_since_ms;
    siem.connects = s.connects;
    siem.sent = s.sent;
    siem.error = tt_text(s.error);
    st.siem = &siem;
  }
  Tether__Response resp = TETHER__RESPONSE__INIT;
  resp.id = id;
  resp.body_case = TETHER__RESPONSE__BODY_STATUS;
  resp.status = &st;
  return tt_link_send(c->link, TT_K_RESPONSE, &resp.base);
}
