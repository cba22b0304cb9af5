/* commsync notices widget: shows a customer's dashboard notices, with a dismiss button.
 *
 *   <div id="commsync-notices"></div>
 *   <script src="https://comms.example/widget.js" data-customer="1042" data-token="v1.…" defer></script>
 *
 * Options (attributes of the script tag): data-customer, data-token (from `commsync token`),
 * data-api (default: where this script came from), data-target (default: #commsync-notices).
 * No dependencies; the notice HTML is sanitised by the server.
 */
(function () {
  "use strict";
  var script = document.currentScript;
  if (!script) { return; }
  var api = (script.getAttribute("data-api") || new URL(script.src, location.href).origin).replace(/\/$/, "");
  var customer = script.getAttribute("data-customer");
  var token = script.getAttribute("data-token");
  var COLOURS = {
    info: ["#eff6ff", "#1d4ed8"],
    success: ["#f0fdf4", "#15803d"],
    warning: ["#fff7ed", "#c2410c"],
    error: ["#fef2f2", "#b91c1c"]
  };

  function target() {
    var found = document.querySelector(script.getAttribute("data-target") || "#commsync-notices");
    if (found) { return found; }
    var made = document.createElement("div");
    made.id = "commsync-notices";
    script.parentNode.insertBefore(made, script);
    return made;
  }

  function path(id) {
    return id.split("/").map(encodeURIComponent).join("/");
  }

  function call(method, url) {
    return fetch(url, { method: method, headers: { "Authorization": "Bearer " + token } });
  }

  function dismiss(notice, box) {
    box.style.opacity = "0.5";
    call("POST", api + "/v1/customers/" + encodeURIComponent(customer) + "/notices/" + path(notice.id) + "/dismiss")
      .then(function (response) {
        if (response.ok) { box.parentNode.removeChild(box); } else { box.style.opacity = "1"; }
      }, function () { box.style.opacity = "1"; });
  }

  function render(notice) {
    var colours = COLOURS[notice.message_type] || COLOURS.info;
    var box = document.createElement("div");
    box.setAttribute("role", notice.message_type === "error" ? "alert" : "status");
    box.setAttribute("data-commsync-notice", notice.id);
    box.setAttribute("data-type", notice.message_type);
    box.style.cssText = "position:relative;margin:0 0 12px;padding:12px 40px 12px 16px;border-left:4px solid " +
      colours[1] + ";background:" + colours[0] + ";color:#1f2933;border-radius:4px;font:14px/1.5 -apple-system,Segoe UI,Roboto,sans-serif";
    var heading = document.createElement("strong");
    heading.textContent = notice.heading;
    heading.style.cssText = "display:block;margin-bottom:4px;color:" + colours[1];
    var body = document.createElement("div");
    body.innerHTML = notice.html;
    box.appendChild(heading);
    box.appendChild(body);
    if (notice.dismissible) {
      var close = document.createElement("button");
      close.type = "button";
      close.setAttribute("aria-label", "Dismiss");
      close.setAttribute("data-commsync-dismiss", notice.id);
      close.textContent = "\u00d7";
      close.style.cssText = "position:absolute;top:8px;right:8px;border:0;background:none;font-size:20px;line-height:1;cursor:pointer;color:" + colours[1];
      close.addEventListener("click", function () { dismiss(notice, box); });
      box.appendChild(close);
    }
    return box;
  }

  function style() {
    if (document.getElementById("commsync-notices-style")) { return; }
    var css = document.createElement("style");
    css.id = "commsync-notices-style";
    css.textContent = "[data-commsync-notice] p{margin:0 0 8px}[data-commsync-notice] p:last-child{margin:0}" +
      "[data-commsync-notice] a{color:inherit;text-decoration:underline}";
    document.head.appendChild(css);
  }

  if (!customer || !token) { return; }
  style();
  call("GET", api + "/v1/customers/" + encodeURIComponent(customer) + "/notices")
    .then(function (response) { return response.ok ? response.json() : { notices: [] }; })
    .then(null, function () { return { notices: [] }; }) /* unreachable, or an origin not allowed */
    .then(function (data) {
      var box = target();
      box.setAttribute("data-commsync-loaded", "true");
      data.notices.forEach(function (notice) { box.appendChild(render(notice)); });
    });
})();
