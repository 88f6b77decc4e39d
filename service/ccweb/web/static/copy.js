/* ccweb: copy buttons for the page's code blocks (pre[data-copy]). Progressive enhancement: without this
   script the blocks are plain text to select and copy. No inline script, nothing from elsewhere. */
(function () {
  "use strict";
  var blocks = document.querySelectorAll("pre[data-copy]");
  if (!blocks.length) {
    return;
  }
  var status = document.createElement("p");
  status.className = "visually-hidden";
  status.setAttribute("role", "status");
  document.body.appendChild(status);

  function fallback(text) {
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = text;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (error) {
        copied = false;
      }
      document.body.removeChild(area);
      if (copied) {
        resolve();
      } else {
        reject(new Error("copy refused"));
      }
    });
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        return fallback(text);
      });
    }
    return fallback(text);
  }

  function say(sentence) {
    status.textContent = "";
    window.setTimeout(function () {
      status.textContent = sentence;
    }, 50);
  }

  function name(pre) {
    /* The block's own name, as aria-labelledby gives it (its section's heading, then its title): unique on the
       page, so a screen reader's list of buttons tells "GitLab CI, A job" from "Buildkite, A step". */
    var ids = (pre.getAttribute("aria-labelledby") || "").split(/\s+/);
    var parts = [];
    ids.forEach(function (id) {
      var element = id ? document.getElementById(id) : null;
      if (element) {
        parts.push(element.textContent.trim().replace(/:$/, ""));
      }
    });
    return parts.join(", ");
  }

  Array.prototype.forEach.call(blocks, function (pre) {
    var bar = document.createElement("div");
    bar.className = "copy-bar";
    var button = document.createElement("button");
    button.type = "button";
    button.className = "copy";
    button.textContent = "Copy";
    var label = name(pre);
    button.setAttribute("aria-label", "Copy" + (label ? ": " + label : " this code"));
    button.addEventListener("click", function () {
      copy(pre.textContent).then(function () {
        button.textContent = "Copied";
        say("Copied to the clipboard.");
        window.setTimeout(function () {
          button.textContent = "Copy";
        }, 2000);
      }, function () {
        say("The browser did not allow copying: select the text and copy it.");
      });
    });
    bar.appendChild(button);
    pre.parentNode.insertBefore(bar, pre);
  });
}());
