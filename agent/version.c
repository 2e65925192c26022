/* The version this agent says it is (Hello, enrollment, reports, upgrades). A file of its
 * own so that the test suite can link the same agent once more under the next version
 * (tests: tether-agent-next), which a rollout test installs as an upgrade. */
#ifndef TT_AGENT_VERSION
#define TT_AGENT_VERSION TT_VERSION
#endif
const char agent_version[] = TT_AGENT_VERSION;
