// Follows the link page: a new QR when it rotates, a reload when the status changes.
// Without JavaScript the page refreshes itself every 5 seconds instead (noscript).
(function () {
  "use strict";
  var box = document.getElementById("link");
  if (!box) { return; }
  var status = box.getAttribute("data-status");
  var qrId = box.getAttribute("data-qr-id");
  function check() {
    fetch("/api/portal/tenant/current/status", { credentials: "same-origin", cache: "no-store" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) { return; }
        var nowId = data.qr_id || "";
        if (data.tenant.status !== status || (nowId === "") !== (qrId === "")) {
          window.location.reload();
          return;
        }
        if (nowId !== qrId) {
          qrId = nowId;
          var image = document.getElementById("qr");
          if (image) { image.src = "/link/qr.svg?v=" + encodeURIComponent(nowId); }
        }
      })
      .catch(function () { /* offline for a moment: the next check tries again */ })
      .then(function () { window.setTimeout(check, 1500); });
  }
  window.setTimeout(check, 1500);
})();
