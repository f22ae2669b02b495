// Starts Swagger UI on /docs. A file, not an inline script: the CSP allows only 'self'.
// Requests from "Try it out" carry the session's CSRF token, so a signed-in admin can use
// them as they are; with a token set under "Authorize" the token alone is used.
window.addEventListener("DOMContentLoaded", function () {
  var root = document.getElementById("swagger-ui");
  var csrf = root.getAttribute("data-csrf-token");
  window.SwaggerUIBundle({
    url: root.getAttribute("data-openapi-url"),
    domNode: root,
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: function (request) {
      if (csrf) {
        request.headers["X-CSRF-Token"] = csrf;
      }
      return request;
    },
  });
});
