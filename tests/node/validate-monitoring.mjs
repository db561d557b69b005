// Validates Prometheus Operator objects (a JSON array on stdin) against the published models of
// their CRDs; prints one line per object: "ok Kind/name" or "invalid Kind/name: why". Exits 1 if
// any is invalid.
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

const models = { PrometheusRule, ServiceMonitor };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const object of JSON.parse(input)) {
  const what = `${object.kind}/${object.metadata?.name}`;
  const Model = models[object.kind];
  try {
    if (!Model) throw new Error(`no model for kind ${object.kind}`);
    if (object.apiVersion !== Model.apiVersion) throw new Error(`apiVersion ${object.apiVersion}, want ${Model.apiVersion}`);
    new Model(object).validate();
    console.log(`ok ${what}`);
  } catch (e) {
    failed = true;
    console.log(`invalid ${what}: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
