// analytics.js (@segment/analytics-next) as the npm package ships it, exposed for the
// test page of tests/test_analytics_next.py; esbuild bundles this into one IIFE.
import { AnalyticsBrowser } from "@segment/analytics-next";

window.AnalyticsBrowser = AnalyticsBrowser;
