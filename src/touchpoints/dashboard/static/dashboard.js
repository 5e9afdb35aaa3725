// Draws each page's charts from the figures the server wrote into the page, and keeps
// the live table fed from the server-sent event stream. No build step, no framework.
(function () {
  "use strict";

  function drawCharts() {
    var figures = document.querySelectorAll("script[data-figure]");
    var drawn = [];
    figures.forEach(function (node) {
      var target = document.getElementById(node.getAttribute("data-figure"));
      var figure = JSON.parse(node.textContent);
      drawn.push(
        Plotly.newPlot(target, figure.data, figure.layout, {
          responsive: true,
          displaylogo: false,
        })
      );
    });
    return Promise.all(drawn);
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  function followLive() {
    var body = document.getElementById("live-rows");
    var status = document.getElementById("live-status");
    var source = new EventSource("/dashboard/live/stream");
    source.onopen = function () { status.textContent = "connected"; };
    source.onerror = function () { status.textContent = "reconnecting…"; };
    source.onmessage = function (message) {
      var event = JSON.parse(message.data);
      var row = document.createElement("tr");
      row.setAttribute("data-message-id", event.message_id);
      [event.received_at, event.source_id, event.channel, event.type,
       event.event || event.name, event.page_path].forEach(function (value) {
        row.appendChild(cell(value));
      });
      body.insertBefore(row, body.firstChild);
      while (body.rows.length > 200) { body.deleteRow(body.rows.length - 1); }
    };
  }

  document.addEventListener("DOMContentLoaded", function () {
    if (document.getElementById("live-rows")) { followLive(); }
    drawCharts().then(function () { document.body.setAttribute("data-ready", "yes"); });
  });
})();
